"""`--mode eval`: AUC and calibration by hand, and the mode against direct scoring."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import sklearn.metrics

from lamda_jax import attributes
from lamda_jax import config as config_lib
from lamda_jax.data.dialog import Turn
from lamda_jax.serving import evaluation, ranking, runs
from tests import reference_scoring


def test_auc_hand_worked():
  # positives 0.9, 0.3 vs negatives 0.8, 0.1: 3 of the 4 pairs are ordered right.
  assert evaluation.auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0])) == 0.75
  assert evaluation.auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5  # a tie counts half
  assert math.isnan(evaluation.auc(np.array([0.2, 0.7]), np.array([1, 1])))


def test_expected_calibration_error_hand_worked():
  probabilities, labels = np.array([0.05, 0.15, 0.95, 0.85]), np.array([0, 1, 1, 1])
  # Four bins of one response each: |0 - .05| + |1 - .15| + |1 - .95| + |1 - .85|, each x 1/4.
  assert evaluation.expected_calibration_error(probabilities, labels, 10) == pytest.approx(0.275)
  calibrated = np.array([0.5] * 4), np.array([0, 1, 0, 1])
  assert evaluation.expected_calibration_error(*calibrated, 10) == pytest.approx(0.0)


def test_reliability_points_hand_worked():
  # Bins [0, .25), [.25, .5), [.5, .75), [.75, 1]: the second is empty and left out.
  probabilities, labels = np.array([0.1, 0.2, 0.6, 0.9, 1.0]), np.array([0, 1, 1, 1, 0])
  points = evaluation.reliability(probabilities, labels, 4)
  assert [(p['share'], p['mean_probability'], p['positive_rate']) for p in points] == [
      pytest.approx((0.4, 0.15, 0.5)), pytest.approx((0.2, 0.6, 1.0)),
      pytest.approx((0.4, 0.95, 0.5))]


def test_eval_mode_matches_direct_scoring(tmp_path, a_run):
  experiment, run_dir = a_run
  rng = np.random.default_rng(1)
  words = 'value function object class return list string number module method'.split()
  records = [{'context': [{'speaker': 'A', 'text': ' '.join(rng.choice(words, 4))}],
              'response': {'speaker': 'B', 'text': ' '.join(rng.choice(words, 3))},
              'labels': {'SENSIBLE': int(i % 2), 'UNSAFE': int(i % 3 == 0)}} for i in range(30)]
  too_long = {'context': [{'speaker': 'A', 'text': 'value'}],  # cannot fit seq_len 64
              'response': {'speaker': 'B', 'text': ' '.join(words * 8)}, 'labels': {'SENSIBLE': 1}}
  path = tmp_path / 'held_out.jsonl'
  path.write_text(''.join(json.dumps(r) + '\n' for r in records + [too_long]))
  experiment = dataclasses.replace(
      experiment, eval=config_lib.EvalConfig(from_run=run_dir, labels=(str(path),),
                                             sampled_contexts=3, judge_run=run_dir),
      decode=config_lib.DecodeConfig(num_candidates=4, max_new_tokens=8))
  results = evaluation.run(experiment, str(tmp_path / 'out'))
  assert (results['responses'], results['too_long']) == (31, 1)  # counted, not scored

  # The reference: a full forward pass per (response, attribute); AUC from scikit-learn.
  opened = runs.open_run(experiment, run_dir, 'eval.from_run')
  direct = reference_scoring.full_pass_scores(
      opened.tokenizer, opened.model, opened.params,
      [tuple(Turn(**t) for t in r['context']) for r in records],
      [r['response']['text'] for r in records], ('SENSIBLE', 'UNSAFE'), 64)
  for column, attribute in enumerate(('SENSIBLE', 'UNSAFE')):
    labels = np.array([r['labels'][attribute] for r in records])
    assert results[f'{attribute}/count'] == 30
    assert results[f'{attribute}/auc'] == pytest.approx(
        sklearn.metrics.roc_auc_score(labels, direct[:, column]), abs=1e-6)
    assert results[f'{attribute}/accuracy'] == pytest.approx(
        ((direct[:, column] >= 0.5) == labels).mean())
  assert 'SPECIFIC/count' not in results  # no response rates it
  assert any((tmp_path / 'out' / 'tensorboard').iterdir())
  assert results['sampled/contexts'] == 3
  # Another run judges the same replies (here the run itself, by the judge's own
  # scoring pass, checked against one full forward pass per score).
  assert results['judge_run'] == run_dir
  for attribute in attributes.NAMES:
    assert 0 <= results[f'sampled/{attribute}/candidates_rate'] <= 1
    assert 0 <= results[f'judged/{attribute}/chosen_rate'] <= 1
  contexts = [tuple(Turn(**t) for t in r['context']) for r in records[:3]]
  texts = [r['response']['text'] for r in records[:3]]
  judged = evaluation._judged(opened, contexts, texts, 64)
  np.testing.assert_allclose(
      [[scores[a] for a in attributes.NAMES] for scores in judged],
      reference_scoring.full_pass_scores(opened.tokenizer, opened.model, opened.params,
                                         contexts, texts, attributes.NAMES, 64), rtol=1e-5)


RUDE = 'you are a damn idiot'


def test_sampled_reply_rates_hand_worked(tmp_path):
  """Two contexts: one answered (chosen scores row 0), one all-unsafe (fallback)."""
  tables = [[[0.9, 0.6, 0.2, 0.1], [0.3, 0.7, 0.8, 0.2], [0.8, 0.1, 0.1, 0.0]],
            [[0.9, 0.9, 0.9, 0.9], [0.1, 0.2, 0.3, 0.7], [0.5, 0.5, 0.5, 0.6]]]

  class TableResponder:  # decisions from fixed score tables instead of a model
    def respond(self, contexts):
      return [ranking.decide([RUDE, 'b', ''], np.zeros(3), np.ones(3), [True] * 3,
                             np.array(tables[i]), 'lamda', 0.5, 'fallback')
              for i, _ in enumerate(contexts)]

  results = evaluation.sampled_reply_rates(TableResponder(), [(), ()], str(tmp_path))
  assert results['sampled/fallback_rate'] == 0.5
  # The chosen replies (and the fallback) go to the rating sheet, one row each.
  with open(tmp_path / 'rating_sheet.csv', encoding='utf-8', newline='') as f:
    rows = list(csv.reader(f))
  assert [row[2] for row in rows[1:]] == [RUDE, 'fallback']
  # A judge nobody here trained: alt-profanity-check finds the one chosen reply rude.
  assert results['sampled/profanity_check/chosen_unsafe_rate'] == 1.0
  # Chosen: context 0's rude one (quality 3.5 > 2.4). Candidates: the four non-empty ones.
  assert results['sampled/SENSIBLE/chosen_rate'] == 1.0
  assert results['sampled/INTERESTING/chosen_rate'] == 0.0
  assert results['sampled/SENSIBLE/candidates_rate'] == 0.5  # 0.9, 0.3, 0.9, 0.1
  assert results['sampled/SPECIFIC/candidates_rate'] == 0.75  # 0.6, 0.7, 0.9, 0.2
  assert results['sampled/UNSAFE/candidates_rate'] == 0.5  # 0.1, 0.2, 0.9, 0.7
