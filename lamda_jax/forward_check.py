"""A forward pass of a freshly initialised model on real tokens.

Proves the whole path from text to logits before any training exists: a
tokenizer trained on Python's documentation, a held-out topic encoded, and the
next-token loss of the untrained model, which should sit near log(vocab).
"""

import math
import os

import jax
import jax.numpy as jnp
import optax

from lamda_jax import corpora
from lamda_jax import tokenizer as tokenizer_lib
from lamda_jax.config import ExperimentConfig
from lamda_jax.model import Decoder

HELD_OUT_TOPIC = 'with'  # never seen by the tokenizer


def run(experiment: ExperimentConfig, workdir: str) -> dict:
  cfg, seq_len = experiment.model, experiment.train.seq_len
  docs = corpora.python_docs()
  held_out = docs.pop(HELD_OUT_TOPIC)
  model_path = os.path.join(workdir, 'tokenizer.model')
  if os.path.exists(model_path):
    tokenizer = tokenizer_lib.load(model_path)
  else:
    tokenizer = tokenizer_lib.train(docs.values(), cfg.vocab_size, model_path)
  if tokenizer.vocab_size() > cfg.vocab_size:
    raise ValueError(f'{model_path} has {tokenizer.vocab_size()} pieces but '
                     f'config.model.vocab_size is {cfg.vocab_size}')

  ids = tokenizer.encode(held_out)[:seq_len + 1]
  tokens = jnp.asarray([ids[:-1]], jnp.int32)  # [1, length]
  targets = jnp.asarray([ids[1:]], jnp.int32)
  model = Decoder(cfg)
  params = jax.jit(model.init)(jax.random.key(0), tokens)['params']
  logits = jax.jit(model.apply)({'params': params}, tokens)
  loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean())
  return {
      'mode': 'forward', 'text': f'pydoc_data.topics[{HELD_OUT_TOPIC!r}]',
      'first_pieces': tokenizer.id_to_piece(ids[:12]), 'tokens': tokens.shape[1],
      'loss': loss, 'log_vocab': math.log(cfg.vocab_size), 'finite': math.isfinite(loss),
  }
