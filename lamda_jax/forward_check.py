"""A forward pass of a freshly initialised model on real tokens.

Proves the whole path from text to logits: the run's tokenizer, a held-out
document encoded, and the next-token loss of the untrained model, which should
sit near log(vocab).
"""

import math

import jax
import jax.numpy as jnp
import optax

from lamda_jax import input_pipeline
from lamda_jax.config import ExperimentConfig
from lamda_jax.model import Decoder


def run(experiment: ExperimentConfig, workdir: str) -> dict:
  cfg, seq_len = experiment.model, experiment.train.seq_len
  held_out = input_pipeline.split_documents()[1][0]
  tokenizer = input_pipeline.tokenizer_for(experiment, workdir)

  ids = tokenizer.encode(held_out)[:seq_len + 1]
  tokens = jnp.asarray([ids[:-1]], jnp.int32)  # [1, length]
  targets = jnp.asarray([ids[1:]], jnp.int32)
  model = Decoder(cfg)
  params = jax.jit(model.init)(jax.random.key(0), tokens)['params']
  logits = jax.jit(model.apply)({'params': params}, tokens)
  loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean())
  return {
      'mode': 'forward', 'text': 'the first held-out document of pydoc_data.topics',
      'first_pieces': tokenizer.id_to_piece(ids[:12]), 'tokens': tokens.shape[1],
      'loss': loss, 'log_vocab': math.log(cfg.vocab_size), 'finite': math.isfinite(loss),
  }
