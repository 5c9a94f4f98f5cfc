"""Discriminator scores read from the same model (§6.1).

A score is P(rating = 1 | <context> RESPONSE <response> <ATTRIBUTE>): the
softmax over just the two rating tokens '0' and '1' at the rating position.
This version runs one forward pass per (response, attribute); reusing the
shared `<context> RESPONSE <response>` prefix across attributes needs the KV
cache of the decoding module.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax import finetune_format


@functools.partial(jax.jit, static_argnames='model')
def _rating_probability(params, tokens, segment_ids, rating_index, zero_id, one_id, *, model):
  """tokens [batch, length] (right-padded) -> P('1') at each row's rating position."""
  logits = model.apply({'params': params}, tokens, None, segment_ids)  # [batch, length, vocab]
  at_rating = jnp.take_along_axis(logits, rating_index[:, None, None], axis=1)[:, 0]
  two_way = jnp.stack([at_rating[:, zero_id], at_rating[:, one_id]], axis=-1)
  return jax.nn.softmax(two_way, axis=-1)[:, 1]


def score(params, model, tokenizer, contexts, responses, attributes, seq_len: int) -> np.ndarray:
  """P(rating = 1) for every (context, response) x attribute: [len(responses), len(attributes)]."""
  rows, rating_index = [], []
  for context, response in zip(contexts, responses):
    for attribute in attributes:
      example = finetune_format.discriminator_example(tokenizer, context, response, attribute, 1,
                                                      seq_len)
      tokens = list(example.tokens)
      # Model inputs are the targets shifted right (0 first); the rating is
      # predicted at the position whose input is the token just before it.
      rows.append([0] + tokens[:-1])
      rating_index.append(len(tokens) - 1)
  tokens = np.zeros((len(rows), seq_len), np.int32)
  segment_ids = np.zeros((len(rows), seq_len), np.int32)  # 0 marks the padding
  for i, row in enumerate(rows):
    tokens[i, :len(row)] = row
    segment_ids[i, :len(row)] = 1
  probability = _rating_probability(params, jnp.asarray(tokens), jnp.asarray(segment_ids),
                                    jnp.asarray(rating_index), tokenizer.piece_to_id('0'),
                                    tokenizer.piece_to_id('1'), model=model)
  return np.asarray(probability).reshape(len(responses), len(attributes))
