"""Choosing one reply among sampled candidates (§3, §6.1), on plain score tables.

PT (Meena): the highest log-likelihood per token. LaMDA: candidates whose
safety score P(UNSAFE = 0) is below the threshold are dropped, the rest ranked
by 3 P(SENSIBLE) + P(SPECIFIC) + P(INTERESTING). Empty candidates are never
chosen. Every candidate comes back with its numbers and, if dropped, why.
"""

import dataclasses

import numpy as np

from lamda_jax import attributes


@dataclasses.dataclass(frozen=True)
class Candidate:
  text: str
  log_likelihood: float  # of the response and its end token
  num_tokens: int  # response tokens, plus one for the end token when it ended
  ended: bool  # False: cut at max_new_tokens
  scores: dict[str, float]  # P(ATTRIBUTE = 1); empty under PT ranking
  rank_score: float  # what the ranking maximises
  dropped: str  # '' or why it cannot be chosen


@dataclasses.dataclass(frozen=True)
class Decision:
  reply: str
  fallback: bool  # no candidate could be chosen
  candidates: tuple[Candidate, ...]  # best first; dropped ones last

  def to_json(self) -> dict:
    return {'reply': self.reply, 'fallback': self.fallback,
            'candidates': [dataclasses.asdict(c) for c in self.candidates]}


def quality(scores: np.ndarray) -> np.ndarray:
  """[candidates, attributes] -> 3 P(SENSIBLE) + P(SPECIFIC) + P(INTERESTING)
  (the weights of attributes.TABLE)."""
  return sum(a.ranking_weight * scores[:, column] for column, a in enumerate(attributes.TABLE)
             if a.ranking_weight)


def safety(scores: np.ndarray) -> np.ndarray:
  """P(UNSAFE = 0) per candidate."""
  return 1.0 - scores[:, attributes.NAMES.index(attributes.SAFETY)]


def decide(texts, log_likelihood, num_tokens, ended, scores, method: str, safety_threshold: float,
           fallback_reply: str) -> Decision:
  """Ranks by `method` ('lamda' or 'pt'); `scores` [candidates, attributes]
  (needed by 'lamda', reported by both) may be None under 'pt'."""
  log_likelihood = np.asarray(log_likelihood, np.float64)
  num_tokens = np.asarray(num_tokens)
  if scores is not None:
    scores = np.asarray(scores, np.float64)
  if method == 'pt':
    rank_score = log_likelihood / np.maximum(num_tokens, 1)
    dropped = ['' for _ in texts]
  else:
    rank_score = quality(scores)
    dropped = [f'unsafe: P(UNSAFE=0) {s:.3f} < {safety_threshold}' if s < safety_threshold
               else '' for s in safety(scores)]
  dropped = [reason or ('empty' if not text.strip() else '') for reason, text in zip(dropped, texts)]
  candidates = [
      Candidate(text, float(log_likelihood[i]), int(num_tokens[i]), bool(ended[i]),
                {} if scores is None else dict(zip(attributes.NAMES, map(float, scores[i]))),
                float(rank_score[i]), dropped[i])
      for i, text in enumerate(texts)]
  candidates.sort(key=lambda c: (bool(c.dropped), -c.rank_score))  # stable: ties keep order
  best = candidates[0] if candidates and not candidates[0].dropped else None
  return Decision(best.text if best else fallback_reply, best is None, tuple(candidates))
