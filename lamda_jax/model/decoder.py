"""The LaMDA decoder (§3, Table 27): a pre-norm decoder-only Transformer with T5
relative attention bias and gated-GELU feed-forward blocks (RoPE, grouped-query
attention and other activations are config options, for ablations).

Decoding passes a `KVCache` (kv_cache.py): the keys and values of the tokens
seen so far, one slot per token; a call then runs only the new chunk of tokens.
"""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax import attributes
from lamda_jax import config as config_lib
from lamda_jax.config import ModelConfig
from lamda_jax.model import layers
from lamda_jax.model.kv_cache import KVCache, cached_attention_mask


class DecoderLayer(nn.Module):
  """x + attention(norm(x)), then x + mlp(norm(x))."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x, attention_bias, positions, cached=None, cache_index=None, prefix=None):
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))  # same mask along length (T5)
    h = layers.RMSNorm(cfg, name='pre_attention_norm')(x)
    h, updated = layers.MultiHeadAttention(cfg, self.deterministic, name='attention')(
        h, attention_bias, positions, cached, cache_index, prefix)
    x = x + dropout(h, deterministic=self.deterministic)
    h = layers.RMSNorm(cfg, name='pre_mlp_norm')(x)
    h = layers.GatedMlp(cfg, self.deterministic, name='mlp')(h)
    x = x + dropout(h, deterministic=self.deterministic)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    return x, updated  # (carry, per-layer output) so nn.scan can stack layers


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


READOUTS = ('vocab', 'heads', 'both')  # what Decoder returns; see its __call__
HEADS_NAME = 'attribute_heads'  # the heads' parameters in the tree


class Decoder(nn.Module):
  """tokens [batch, length] -> float32 logits [batch, length, vocab].

  `positions` restart at 0 in each packed segment; RoPE's angles are computed
  from them, and the relative attention bias from distances between them, so a
  packed example sees exactly what it would alone. Without a cache they must
  advance by one per token within a segment (packing and the default do), and
  the bias is the in-row distances' (`RelativePositionBias.in_row`).
  `attribute_heads` > 0 adds that many classifier heads on the final hidden
  state (layers.AttributeHeads; `for_experiment` says when).
  """
  config: ModelConfig
  attribute_heads: int = 0

  @nn.compact
  def __call__(self, tokens, positions=None, segment_ids=None, deterministic=True,
               cache: KVCache | None = None, vocab_ids=None, readout: str = 'vocab'):
    """The readout, or (readout, cache with these tokens appended) when given a cache.

    `readout`: 'vocab' the logits; 'heads' the attribute heads' logits
    [batch, length, attribute_heads] without the output projection; 'both'
    (logits, head logits). `vocab_ids` [n]: the logits of only these
    vocabulary entries, [..., n] (a discriminator score reads two), without
    the full output projection.
    """
    cfg = self.config
    if readout not in READOUTS or (readout != 'vocab' and not self.attribute_heads):
      raise ValueError(f'readout {readout!r}: expected one of {READOUTS}, and heads only '
                       f'with attribute_heads > 0 (have {self.attribute_heads})')
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[-1]), tokens.shape)
    if segment_ids is None:
      segment_ids = jnp.ones_like(tokens)

    embedder = layers.Embedding(cfg, name='token_embedder')
    x = embedder(tokens)  # [batch, length, embed]
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))

    # One relative bias table shared by all layers (T5), masking folded into
    # the same bias; under RoPE the bias is the mask alone, shared by the heads.
    if cache is None:
      mask = attention_mask(segment_ids)
    else:  # the chunk takes the next slots; the caller sizes the cache to fit
      at = (0, cache.length)
      slot_positions = jax.lax.dynamic_update_slice(cache.positions, positions.astype(jnp.int32), at)
      slot_segment_ids = jax.lax.dynamic_update_slice(cache.segment_ids,
                                                      segment_ids.astype(jnp.int32), at)
      key_positions, key_segment_ids, first_slot = slot_positions, slot_segment_ids, cache.length
      if cache.prefix is not None:  # a shared prefix's slots come first, for each row
        copies = tokens.shape[0] // cache.prefix.positions.shape[0]
        key_positions, key_segment_ids = (
            jnp.concatenate([jnp.repeat(shared, copies, axis=0), own], axis=1)
            for shared, own in ((cache.prefix.positions, slot_positions),
                                (cache.prefix.segment_ids, slot_segment_ids)))
        first_slot = first_slot + cache.prefix.positions.shape[1]
      mask = cached_attention_mask(segment_ids, key_segment_ids, first_slot)
    if cfg.position_encoding == 'relative_bias':
      relative_bias = layers.RelativePositionBias(cfg, name='relpos_bias')
      if cache is None:  # positions advance by one within a segment: in-row distances
        attention_bias = relative_bias.in_row(*tokens.shape)
      else:
        attention_bias = relative_bias(positions, key_positions)
      attention_bias = jnp.where(mask, attention_bias, layers.MASKED)
      bias_axes = ('batch', 'heads', 'length', None)
    else:
      attention_bias, bias_axes = jnp.where(mask, 0., layers.MASKED), ('batch', None, 'length', None)
    attention_bias = nn.with_logical_constraint(attention_bias, bias_axes)

    layer = DecoderLayer
    if cfg.remat_policy != 'none':
      layer = nn.remat(layer, policy=config_lib.REMAT_POLICIES[cfg.remat_policy],
                       prevent_cse=not cfg.scan_layers)
    def layer_cache(index=slice(None)):
      """(this layer's (keys, values), the slot to write[, its shared prefix's (keys, values)])."""
      if cache is None:
        return ()
      prefix = () if cache.prefix is None else ((cache.prefix.keys[index],
                                                 cache.prefix.values[index]),)
      return ((cache.keys[index], cache.values[index]), cache.length) + prefix

    if cfg.scan_layers:
      cached = layer_cache()
      stack = nn.scan(layer, variable_axes={'params': 0}, split_rngs={'params': True, 'dropout': True},
                      in_axes=(nn.broadcast, nn.broadcast) + (0, nn.broadcast, 0)[:len(cached)],
                      length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: 'layers'})
      x, updated = stack(cfg, deterministic, name='layers')(x, attention_bias, positions, *cached)
    else:
      per_layer = []
      for index in range(cfg.num_layers):
        cached = layer_cache(index)
        x, layer_kv = layer(cfg, deterministic, name=f'layers_{index}')(x, attention_bias,
                                                                        positions, *cached)
        per_layer.append(layer_kv)
      updated = None if cache is None else tuple(zip(*per_layer))  # (keys, values) per layer

    if cache is not None:
      cache = KVCache(*updated, slot_positions, slot_segment_ids, cache.length + tokens.shape[1],
                      cache.prefix)
    def returned(out):
      return out if cache is None else (out, cache)

    x = layers.RMSNorm(cfg, name='final_norm')(x)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    heads = None
    if self.attribute_heads:  # always called, so `init` creates the heads' parameters
      heads = layers.AttributeHeads(cfg, self.attribute_heads, name=HEADS_NAME)(x)
    if readout == 'heads':
      return returned(heads)
    if cfg.tie_embeddings:
      kernel, equation, vocab_axis = embedder.embedding, 'ble,ve->blv', 0
    else:
      kernel = layers.param_with_axes(self, 'logits_dense', layers.dense_init,
                                      (cfg.d_model, cfg.vocab_size), ('embed', 'vocab'))
      equation, vocab_axis = 'ble,ev->blv', 1
    if vocab_ids is not None:
      kernel = jnp.take(kernel, vocab_ids, axis=vocab_axis)
    logits = layers.accumulating_einsum(equation, x, kernel.astype(x.dtype), True)  # f32
    if cfg.tie_embeddings:
      logits = logits / np.sqrt(cfg.d_model)  # T5's rescaling for tied weights
    logits = nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))
    return returned((logits, heads) if readout == 'both' else logits)


def for_experiment(experiment: config_lib.ExperimentConfig) -> Decoder:
  """The decoder of a run: with one classifier head per attribute when its
  discriminators are heads (finetune.discriminator = 'heads')."""
  heads = experiment.finetune.discriminator == 'heads'
  return Decoder(experiment.model, attribute_heads=len(attributes.NAMES) if heads else 0)
