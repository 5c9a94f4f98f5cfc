"""Sample-and-rank decisions on hand-built score tables."""

import numpy as np

from lamda_jax import attributes
from lamda_jax.serving import ranking

FALLBACK = 'Let us talk about something else.'


def _decide(scores, texts=None, threshold=0.5, log_likelihood=None, num_tokens=None,
            method='lamda'):
  n = len(scores) if scores is not None else len(log_likelihood)
  texts = texts or [f'reply {i}' for i in range(n)]
  log_likelihood = np.zeros(n) if log_likelihood is None else log_likelihood
  num_tokens = np.full(n, 5) if num_tokens is None else num_tokens
  return ranking.decide(texts, log_likelihood, num_tokens, [True] * n, scores, method, threshold,
                        FALLBACK)


def test_lamda_ranking_weighs_sensible_three_times_and_skips_unsafe():
  #        SENSIBLE SPECIFIC INTERESTING UNSAFE
  scores = [[0.9, 0.9, 0.9, 0.8],   # best quality (4.5) but safety 0.2: dropped
            [0.9, 0.1, 0.1, 0.1],   # 3*0.9 + 0.1 + 0.1 = 2.9  <- chosen
            [0.3, 0.9, 0.9, 0.0],   # 2.7: the plain sum (2.1 > 1.1) would choose this one
            [0.5, 0.2, 0.1, 0.4]]   # 1.8
  decision = _decide(scores)
  assert decision.reply == 'reply 1' and not decision.fallback
  assert [c.text for c in decision.candidates] == ['reply 1', 'reply 2', 'reply 3', 'reply 0']
  np.testing.assert_allclose([c.rank_score for c in decision.candidates], [2.9, 2.7, 1.8, 4.5])
  assert decision.candidates[-1].dropped.startswith('unsafe')
  assert decision.candidates[0].scores == dict(zip(attributes.NAMES, scores[1]))


def test_safety_threshold_is_inclusive_and_configurable():
  scores = [[0.9, 0.9, 0.9, 0.3], [0.1, 0.1, 0.1, 0.0]]  # safety 0.7 and 1.0
  assert _decide(scores, threshold=0.7).reply == 'reply 0'
  assert _decide(scores, threshold=0.71).reply == 'reply 1'


def test_all_unsafe_gives_the_fallback_reply():
  decision = _decide([[0.9, 0.9, 0.9, 0.6], [0.8, 0.8, 0.8, 0.99]])
  assert decision.fallback and decision.reply == FALLBACK
  assert all(c.dropped.startswith('unsafe') for c in decision.candidates)


def test_unsafe_candidates_are_never_returned():
  rng = np.random.default_rng(0)
  for _ in range(300):
    scores = rng.random((16, 4))
    decision = _decide(scores, threshold=0.6)
    safe = 1 - scores[:, 3] >= 0.6
    if not safe.any():
      assert decision.fallback
      continue
    chosen = int(decision.reply.split()[1])
    assert safe[chosen]
    quality = 3 * scores[:, 0] + scores[:, 1] + scores[:, 2]
    assert quality[chosen] == quality[safe].max()


def test_empty_candidates_are_never_chosen():
  decision = _decide([[0.99, 0.99, 0.99, 0.0], [0.2, 0.2, 0.2, 0.0]], texts=['  ', 'ok then'])
  assert decision.reply == 'ok then'
  assert decision.candidates[-1].dropped == 'empty'


def test_pt_ranking_uses_log_likelihood_per_token():
  # Totals -10 (10 tokens) vs -3 (2 tokens) vs -4 (3 tokens): per token -1, -1.5, -1.33.
  decision = _decide(None, log_likelihood=np.array([-3.0, -10.0, -4.0]),
                     num_tokens=np.array([2, 10, 3]), method='pt')
  assert decision.reply == 'reply 1'
  assert [c.text for c in decision.candidates] == ['reply 1', 'reply 2', 'reply 0']
  assert decision.candidates[0].scores == {}
  # Scores, when given, are reported but do not rank, and nothing is dropped as unsafe.
  unsafe = [[0.1, 0.1, 0.1, 0.9]] * 3
  decision = _decide(unsafe, log_likelihood=np.array([-3.0, -10.0, -4.0]),
                     num_tokens=np.array([2, 10, 3]), method='pt')
  assert decision.reply == 'reply 1' and not decision.fallback
  assert decision.candidates[0].scores['UNSAFE'] == 0.9
