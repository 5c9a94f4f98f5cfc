"""`--mode filter`: exactly the candidates above the thresholds are kept, with reasons."""

import dataclasses
import json

import numpy as np
import pytest

from lamda_jax import attributes
from lamda_jax import config as config_lib
from lamda_jax.data import builders, dialog
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import tasks
from lamda_jax.serving import filtering, generate, responder, runs
from lamda_jax.training import loop
from tests import reference_scoring


def _candidates(tmp_path):
  rng = np.random.default_rng(0)
  words = 'value function object class return list string number module method'.split()
  lines = [{'context': [{'speaker': 'A', 'text': ' '.join(rng.choice(words, 4))}],
            'response': {'speaker': 'B', 'text': ' '.join(rng.choice(words, 3))}}
           for _ in range(40)]
  lines.append({'context': [], 'response': {'speaker': 'B', 'text': 'word ' * 200}})
  path = tmp_path / 'candidates.jsonl'
  path.write_text(''.join(json.dumps(line) + '\n' for line in lines))
  return str(path), lines


def test_filter_keeps_exactly_the_candidates_above_the_thresholds(tmp_path, a_run):
  experiment, run_dir = a_run
  path, lines = _candidates(tmp_path)
  opened = runs.open_run(experiment, run_dir, 'filter.from_run')
  scores = reference_scoring.full_pass_scores(  # one full forward pass per score
      opened.tokenizer, opened.model, opened.params,
      [tuple(Turn(**t) for t in line['context']) for line in lines[:40]],
      [line['response']['text'] for line in lines[:40]], attributes.NAMES, 64)

  def midway(column):  # a threshold between two scores, so rounding cannot move one across
    ordered = np.sort(scores[:, column])
    return float(ordered[19] + ordered[20]) / 2

  sensible_min, unsafe_max = midway(0), midway(3)
  keep = (scores[:, 0] >= sensible_min) & (scores[:, 3] <= unsafe_max)

  experiment = dataclasses.replace(experiment, filter=config_lib.FilterConfig(
      candidates=path, from_run=run_dir, sensible_min=float(sensible_min),
      unsafe_max=float(unsafe_max), batch_size=16))
  report = filtering.run(experiment, str(tmp_path / 'out'))
  assert report['candidates'] == 41 and report['kept'] == int(keep.sum())
  assert report['not sensible'] == int((scores[:, 0] < sensible_min).sum())
  assert report['unsafe'] == int((scores[:, 3] > unsafe_max).sum())
  assert report['too long for seq_len 64'] == 1 and report['dropped'] == 41 - report['kept']
  kept = [json.loads(line) for line in (tmp_path / 'out' / 'filtered.jsonl').open()]
  assert [k['origin'] for k in kept] == [f'{path}:{i + 1}' for i in np.flatnonzero(keep)]
  for record, i in zip(kept, np.flatnonzero(keep)):
    assert record['response'] == lines[i]['response']
    np.testing.assert_allclose([record['scores'][a] for a in attributes.NAMES],
                               scores[i], rtol=1e-5)
  assert json.loads((tmp_path / 'out' / 'filter_report.json').read_text()) == report


def test_filter_reports_a_bad_candidate_line(tmp_path, a_run):
  experiment, run_dir = a_run
  path = tmp_path / 'bad.jsonl'
  path.write_text('{"context": [], "response": {"speaker": "B", "text": "ok"}}\n'
                  '{"context": [], "response": {"speaker": "B"}}\n')
  experiment = dataclasses.replace(experiment, filter=config_lib.FilterConfig(
      candidates=str(path), from_run=run_dir))
  with pytest.raises(dialog.RecordError, match=f'^{path}:2: response: needs'):
    filtering.run(experiment, str(tmp_path / 'out'))


def test_generate_filter_finetune_chain_without_conversion(tmp_path, a_run):
  """The paper's order (§6.1): generate candidates, keep those the
  discriminators pass, fine-tune the generator on the kept ones; each mode
  reads the previous one's output as it is."""
  experiment, run_dir = a_run
  contexts = tmp_path / 'contexts.jsonl'
  contexts.write_text(''.join(json.dumps({'conversation': f'c{i}', 'context': [
      {'speaker': 'A', 'text': text}]}) + '\n' for i, text in enumerate(
          ['How do I sort a list?', 'What is a module?', 'Tell me about strings.',
           'How do classes work?', 'What does return do?', 'Is a tuple a list?'])))
  generating = dataclasses.replace(experiment, decode=config_lib.DecodeConfig(
      from_run=run_dir, num_candidates=4, max_new_tokens=10))
  generated = generate.run(responder.Responder(generating), str(contexts),
                           str(tmp_path / 'generate'))['output']

  filtering_experiment = dataclasses.replace(experiment, filter=config_lib.FilterConfig(
      candidates=generated, from_run=run_dir, sensible_min=0.0, unsafe_max=1.0))
  report = filtering.run(filtering_experiment, str(tmp_path / 'filter'))
  records = [json.loads(line) for line in open(generated, encoding='utf-8')]
  texts = [c['text'] for r in records for c in r['candidates']]
  empty = sum(not text.strip() for text in texts)
  assert report['candidates'] == 6 * 4 == len(texts)
  assert report['kept'] + report.get('too long for seq_len 64', 0) + empty == len(texts)
  assert report.get('empty response', 0) == empty
  filtered = tmp_path / 'filter' / 'filtered.jsonl'
  kept = [json.loads(line) for line in filtered.open()]
  assert kept
  for record in kept:  # origin <file>:<line>#<candidate>, the candidate's own text and speaker
    where, index = record['origin'].rsplit('#', 1)
    source = records[int(where.rsplit(':', 1)[1]) - 1]
    candidate = dialog.cleaned_text(source['candidates'][int(index)]['text'])  # the reader's rule
    assert record['response'] == {'speaker': 'B', 'text': candidate}
    assert record['context'] == source['context']
    assert record['conversation'] == source['conversation']

  tuning = dataclasses.replace(experiment, finetune=config_lib.FinetuneConfig(
      generator_data=(str(filtered),), generator_weight=1.0, discriminator_weight=0.0,
      eval_fraction=0.3))
  tuning = tasks.finetune_experiment(tuning)
  datasets = tasks.build(tuning, str(tmp_path / 'tune'))
  opened = runs.open_run(experiment, run_dir, 'finetune.init_from')
  trained_on = []
  for sampler in (datasets.train, datasets.eval):
    assert sampler.names == ['generator']
    source = sampler.sources['generator']
    rows = source.take(range(len(source)))
    for row in range(len(source)):
      for segment in set(rows['segment_ids'][row]) - {0}:
        where = (rows['segment_ids'][row] == segment) & (rows['loss_weights'][row] > 0)
        trained_on.append(opened.tokenizer.decode(rows['targets'][row][where].tolist()))
  # The loss covers exactly the kept responses (and their end token).
  assert sorted(trained_on) == sorted(r['response']['text'] for r in kept)
  summary = loop.run(dataclasses.replace(tuning, train=dataclasses.replace(
      tuning.train, steps=1, eval_every=0, checkpoint_every=1)), str(tmp_path / 'tune'),
      datasets, init_from=run_dir)
  assert summary['final_step'] == 1 and np.isfinite(summary['loss'])


def test_filter_names_a_bad_generated_record(tmp_path, a_run):
  experiment, run_dir = a_run
  path = tmp_path / 'generated.jsonl'
  path.write_text('{"context": [], "candidates": [{"text": "hi"}]}\n')
  experiment = dataclasses.replace(experiment, filter=config_lib.FilterConfig(
      candidates=str(path), from_run=run_dir))
  with pytest.raises(dialog.RecordError, match=f'^{path}:1: reply_speaker: needs'):
    filtering.run(experiment, str(tmp_path / 'out'))
  path.write_text('{"context": [], "reply_speaker": "B", "candidates": [{"text": 3}]}\n')
  with pytest.raises(dialog.RecordError, match=r'candidates\[0\]\.text: needs a string'):
    filtering.run(experiment, str(tmp_path / 'out'))


def test_generator_data_that_kept_nothing_is_named(tmp_path, a_run):
  experiment, _ = a_run
  empty = tmp_path / 'filtered.jsonl'
  empty.write_text('')
  experiment = dataclasses.replace(experiment, finetune=config_lib.FinetuneConfig(
      generator_data=(str(empty),), discriminator_weight=0.0))
  with pytest.raises(config_lib.ConfigError, match=r'finetune\.generator_data: .*hold no'):
    tasks.generator_splits(experiment, builders.BadRecords())
