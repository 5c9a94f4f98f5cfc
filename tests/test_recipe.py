"""experiments/quality_safety_recipe.py, run small: every stage's artefact, the
held-out contexts kept out of generation, and the three systems compared."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from lamda_jax import config as config_lib
from lamda_jax.finetune import tasks
from tests.configs import tiny_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_small(tmp_path):
  """The one command, on one device in a process of its own, at a size that
  runs in a minute: every stage, tiny budgets, with discriminator heads (the
  rating token's stages are tested mode by mode in test_filtering and
  test_evaluation): heads are fine-tuned onto the pre-trained run, filter and
  judge through them, and stay in the generator's run."""
  labels = tmp_path / 'labels.jsonl'  # a few hundred rated responses, some contexts shared
  words = 'value function object class return list string number module method'.split()
  labels.write_text(''.join(json.dumps({
      'conversation': f'c{i}', 'context': [{'speaker': 'A', 'text': f'{words[i % 10]} '
                                                                     f'{words[i // 10 % 10]}'}],
      'response': {'speaker': 'B', 'text': words[i % 10]},
      'labels': {'SENSIBLE': i % 2, 'UNSAFE': int(i % 5 == 0)}}) + '\n' for i in range(300)))
  overrides = ['--config.train.steps=4', '--config.train.seq_len=64', '--config.train.batch_size=8',
               '--config.train.eval_every=0', '--config.train.checkpoint_every=4',
               '--config.train.log_every=2',
               f'--config.finetune.labels=("{labels}",)',
               # A model trained for seconds judges everything near 0.5: keep what fits.
               '--config.filter.sensible_min=0.0', '--config.filter.unsafe_max=1.0',
               '--config.decode.num_candidates=2', '--config.decode.max_new_tokens=6',
               '--config.finetune.discriminator=heads']
  ran = subprocess.run(
      [sys.executable, '-m', 'experiments.quality_safety_recipe', '--config',
       'tests/configs/tiny_docs.py', '--workdir', str(tmp_path), '--contexts=6', '--held_out=3',
       *overrides], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''})
  assert ran.returncode == 0, ran.stderr[-3000:]
  result = json.loads((tmp_path / 'results.json').read_text())
  assert json.loads(ran.stdout.strip().splitlines()[-1]).keys() == result['systems'].keys()
  experiment = config_lib.load(tiny_docs.get_config())
  experiment = dataclasses.replace(experiment, finetune=dataclasses.replace(
      experiment.finetune, labels=(str(labels),)))

  # Candidates were generated for training contexts only, never held-out ones.
  splits = tasks.label_splits(experiment, str(tmp_path / 'discriminators'), 'finetune.labels',
                              experiment.finetune.labels)
  held_out = {tuple((t.speaker, t.text) for t in r.context) for r in splits['validation']}
  generated = [json.loads(line) for line in (tmp_path / 'generate' / 'generated.jsonl').open()]
  assert len(generated) == result['training_contexts'] > 0
  assert not {tuple((t['speaker'], t['text']) for t in g['context']) for g in generated} & held_out
  kept = [json.loads(line) for line in (tmp_path / 'filter' / 'filtered.jsonl').open()]
  assert len(kept) == result['filtered']['kept'] > 0
  assert (tmp_path / 'generator' / 'checkpoints').is_dir()
  assert json.loads(next((tmp_path / 'filter' / 'filtered.jsonl').open()))['scores']
  # The three systems answered the same held-out contexts, judged the same way.
  sheets = {}
  for stage in ('pretrain', 'discriminators', 'generator'):
    with open(tmp_path / 'evaluate' / stage / 'rating_sheet.csv', encoding='utf-8') as f:
      sheets[stage] = [row[1] for row in list(csv.reader(f))[1:]]
  assert sheets['pretrain'] == sheets['discriminators'] == sheets['generator']
  assert len(sheets['pretrain']) == result['held_out_contexts'] == 3
  for rates in result['systems'].values():
    assert 0 <= rates['judged/SENSIBLE/candidates_rate'] <= 1
    assert 0 <= rates['independent/SENSIBLE/candidates_rate'] <= 1
  # The independent judge: its own pre-training from the next seed, fine-tuned
  # on the same rated data, split the same way.
  seed = {stage: json.loads((tmp_path / stage / 'checkpoints' / '4' / 'data' / 'metadata')
                            .read_text())['seed'] for stage in ('pretrain', 'judge_pretrain')}
  assert seed['judge_pretrain'] == seed['pretrain'] + 1
  assert (tmp_path / 'judge' / 'checkpoints').is_dir()
  judge_splits = tasks.label_splits(experiment, str(tmp_path / 'judge'), 'finetune.labels',
                                    experiment.finetune.labels)
  assert judge_splits['validation'] == splits['validation']
  table = (tmp_path / 'results.md').read_text().splitlines()
  assert [tuple(line.split(' | ')[:2]) for line in table[-6:]] == [
      (f'| {system}', judge) for system in ('pre-trained (PT ranking)', 'discriminator-ranked',
                                            'generator fine-tuned')
      for judge in ('recipe', 'independent')]
