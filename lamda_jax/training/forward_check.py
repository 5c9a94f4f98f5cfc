"""A forward pass of a freshly initialised model on real tokens.

Proves the whole path from text to logits: the run's tokenizer, held-out
records of the first source encoded into one full row, and the next-token loss
of the untrained model, which should sit near log(vocab).
"""

import math

import jax
import jax.numpy as jnp
import optax

from lamda_jax.config import ExperimentConfig
from lamda_jax.data import pipeline
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.model.decoder import Decoder


def run(experiment: ExperimentConfig, workdir: str) -> dict:
  cfg, seq_len = experiment.model, experiment.train.seq_len
  sources = pipeline.open_sources(experiment, workdir)
  tokenizer = pipeline.tokenizer_for(experiment, workdir, sources)
  name, source = next(iter(sources.items()))
  ids, origins = [], []
  for origin, text, _ in pipeline.source_texts(source, 'validation'):  # one full row
    ids += tokenizer.encode(text) + [tokenizer_lib.EOS_ID]
    origins.append(origin)
    if len(ids) > seq_len:
      break

  ids = ids[:seq_len + 1]
  tokens = jnp.asarray([ids[:-1]], jnp.int32)  # [1, length]
  targets = jnp.asarray([ids[1:]], jnp.int32)
  model = Decoder(cfg)
  params = jax.jit(model.init)(jax.random.key(0), tokens)['params']
  logits = jax.jit(model.apply)({'params': params}, tokens)
  loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean())
  return {
      'mode': 'forward', 'source': name, 'held_out_records': len(origins),
      'first_pieces': tokenizer.id_to_piece(ids[:12]), 'tokens': tokens.shape[1],
      'loss': loss, 'log_vocab': math.log(cfg.vocab_size), 'finite': math.isfinite(loss),
  }
