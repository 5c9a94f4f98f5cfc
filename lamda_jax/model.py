"""The LaMDA decoder (§3, Table 27): a pre-norm decoder-only Transformer with T5
relative attention bias and gated-GELU feed-forward blocks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax import layers
from lamda_jax.config import ModelConfig

REMAT_POLICIES = {
    'full': jax.checkpoint_policies.nothing_saveable,  # recompute everything
    'dots': jax.checkpoint_policies.checkpoint_dots,  # keep every matmul output
    'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep projections
}


class DecoderLayer(nn.Module):
  """x + attention(norm(x)), then x + mlp(norm(x))."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x, attention_bias):
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))  # same mask along length (T5)
    h = layers.RMSNorm(cfg, name='pre_attention_norm')(x)
    h = layers.MultiHeadAttention(cfg, self.deterministic, name='attention')(h, attention_bias)
    x = x + dropout(h, deterministic=self.deterministic)
    h = layers.RMSNorm(cfg, name='pre_mlp_norm')(x)
    h = layers.GatedMlp(cfg, self.deterministic, name='mlp')(h)
    x = x + dropout(h, deterministic=self.deterministic)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    return x, None  # (carry, per-layer output) so nn.scan can stack layers


def attention_mask(segment_ids):
  """Causal and same-segment: [batch, length] -> [batch, 1, q, k] bool.

  Segment id 0 marks padding, which nothing attends to; packed examples (ids
  1, 2, ...) never see each other.
  """
  length = segment_ids.shape[-1]
  causal = jnp.tril(jnp.ones((length, length), jnp.bool_))
  same_segment = segment_ids[:, :, None] == segment_ids[:, None, :]
  not_padding = (segment_ids != 0)[:, None, :]
  return (causal[None] & same_segment & not_padding)[:, None]


class Decoder(nn.Module):
  """tokens [batch, length] -> float32 logits [batch, length, vocab].

  `positions` restart at 0 in each packed segment; the relative attention bias
  is computed from them, so a packed example sees exactly what it would alone.
  """
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens, positions=None, segment_ids=None, deterministic=True):
    cfg = self.config
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[-1]), tokens.shape)
    if segment_ids is None:
      segment_ids = jnp.ones_like(tokens)

    embedder = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
        embedding_init=nn.with_logical_partitioning(layers.embedding_init, ('vocab', 'embed')),
        name='token_embedder')
    x = embedder(tokens)  # [batch, length, embed]
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))

    # One table shared by all layers (T5); masking folded into the same bias.
    attention_bias = layers.RelativePositionBias(cfg, name='relpos_bias')(positions, positions)
    attention_bias = jnp.where(attention_mask(segment_ids), attention_bias, layers.MASKED)
    attention_bias = nn.with_logical_constraint(attention_bias,
                                                ('batch', 'heads', 'length', None))

    layer = DecoderLayer
    if cfg.remat_policy != 'none':
      layer = nn.remat(layer, policy=REMAT_POLICIES[cfg.remat_policy],
                       prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      stack = nn.scan(layer, variable_axes={'params': 0}, split_rngs={'params': True, 'dropout': True},
                      in_axes=nn.broadcast, length=cfg.num_layers,
                      metadata_params={nn.PARTITION_NAME: 'layers'})
      x, _ = stack(cfg, deterministic, name='layers')(x, attention_bias)
    else:
      for index in range(cfg.num_layers):
        x, _ = layer(cfg, deterministic, name=f'layers_{index}')(x, attention_bias)

    x = layers.RMSNorm(cfg, name='final_norm')(x)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    if cfg.tie_embeddings:
      logits = embedder.attend(x) / np.sqrt(cfg.d_model)  # T5's rescaling for tied weights
    else:
      logits = layers.dense(self, 'logits_dense', x, 'ble,ev->blv', (cfg.d_model, cfg.vocab_size),
                            ('embed', 'vocab'))
    return nn.with_logical_constraint(logits.astype(jnp.float32), ('batch', 'length', 'vocab'))
