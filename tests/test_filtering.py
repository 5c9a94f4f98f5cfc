"""`--mode filter`: exactly the candidates above the thresholds are kept, with reasons."""

import dataclasses
import json

import numpy as np
import pytest

from lamda_jax import attributes
from lamda_jax import config as config_lib
from lamda_jax.data import dialog
from lamda_jax.data.dialog import Turn
from lamda_jax.serving import filtering, runs
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
