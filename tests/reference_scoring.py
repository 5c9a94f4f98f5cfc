"""Discriminator scores the slow, obvious way: one full forward pass per
(response, attribute), no cache, no padding, no shared prefix. The reference
that `scoring.score` and the modes built on it are tested against."""

import numpy as np

from lamda_jax import attributes
from lamda_jax.finetune import formats


def full_pass_score(tokenizer, model, params, context, response, attribute, seq_len) -> float:
  """P(rating = 1): the softmax over the logits of '0' and '1' at the rating
  position, or with discriminator heads the sigmoid of the attribute's head there."""
  tokens = list(formats.discriminator_example(tokenizer, context, response, attribute, 1,
                                              seq_len).tokens)
  inputs = np.array([[0] + tokens[:-1]])
  if model.attribute_heads:
    logit = np.asarray(model.apply({'params': params}, inputs, readout='heads'),
                       np.float64)[0, -1, attributes.NAMES.index(attribute)]
    return float(1 / (1 + np.exp(-logit)))
  logits = np.asarray(model.apply({'params': params}, inputs), np.float64)[0, -1]
  zero, one = logits[tokenizer.piece_to_id('0')], logits[tokenizer.piece_to_id('1')]
  return float(np.exp(one) / (np.exp(zero) + np.exp(one)))


def full_pass_scores(tokenizer, model, params, contexts, responses, names, seq_len) -> np.ndarray:
  """[len(responses), len(names)] of full_pass_score."""
  return np.array([[full_pass_score(tokenizer, model, params, context, response, name, seq_len)
                    for name in names] for context, response in zip(contexts, responses)])
