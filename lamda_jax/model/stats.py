"""Parameter counts, bytes and FLOPs of a config, from abstract shapes only.

Nothing here allocates parameters: `jax.eval_shape` traces `init`, so the 137B
config is described on a laptop.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from lamda_jax.config import ExperimentConfig, ModelConfig
from lamda_jax.model import decoder
from lamda_jax.model.decoder import Decoder

# Vocab-sized matrices: what "non-embedding" parameter counts leave out.
EMBEDDING_PARAMS = ('token_embedder', 'logits_dense')


def abstract_params(model: Decoder):
  """The boxed (logically partitioned) parameter tree as ShapeDtypeStructs."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(model.init, jax.random.key(0), tokens)['params']


def _size(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def flops_per_token(cfg: ModelConfig, seq_len: int) -> dict[str, int]:
  """Training (forward + backward) FLOPs per token, PaLM's convention (App. B).

  6 x (every matmul weight, the logits projection included; embedding lookups
  are free) + 12 x layers x heads x head_dim x seq_len for the attention
  scores and weighted values, without halving for causality.
  """
  attention_projections = 2 * cfg.d_model * (cfg.num_heads + cfg.kv_heads) * cfg.head_dim
  mlp = (len(cfg.activations) + 1) * cfg.d_model * cfg.d_ff
  matmul_weights = cfg.num_layers * (attention_projections + mlp) + cfg.d_model * cfg.vocab_size
  dense = 6 * matmul_weights
  attention = 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len
  return {'flops_per_token': dense + attention, 'flops_per_token_dense': dense,
          'flops_per_token_attention': attention}


def describe(experiment: ExperimentConfig) -> dict:
  """Sizes of an experiment, for `--mode describe` and for planning."""
  cfg = experiment.model
  params = abstract_params(decoder.for_experiment(experiment))
  unboxed = nn.unbox(params)
  total = _size(unboxed)
  embedding = sum(_size(unboxed[name]) for name in EMBEDDING_PARAMS if name in unboxed)
  return {
      'name': experiment.name,
      'params_total': total,
      'params_non_embedding': total - embedding,
      'params_embedding': embedding,
      **flops_per_token(cfg, experiment.train.seq_len),
      'param_bytes': sum(math.prod(leaf.shape) * leaf.dtype.itemsize
                         for leaf in jax.tree.leaves(unboxed)),
      'tokens_per_batch': experiment.train.seq_len * experiment.train.batch_size,
      'mesh': {axis: size for axis, size in vars(experiment.mesh).items()},
      'shapes': jax.tree.map(lambda leaf: list(leaf.shape), unboxed),
      'logical_axes': jax.tree.map(lambda spec: list(spec), nn.get_partition_spec(params),
                                   is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)),
  }
