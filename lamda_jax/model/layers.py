"""Building blocks of the LaMDA decoder, in T5.1.1 conventions: no biases, RMS
LayerNorm, relative attention bias, gated feed-forward; RoPE and grouped-query
attention are the options that Llama 2 brings, for ablations. Every parameter is born
with logical axis names; the rules table in the config maps them onto the mesh.

Attention scaling: as in t5x, 1/sqrt(head_dim) is folded into the query
kernel's initialisation, so the logits are not scaled again.
"""

import functools
import operator

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp
import numpy as np

from lamda_jax import config as config_lib
from lamda_jax.config import ModelConfig

# A large negative bias instead of -inf: fully masked rows (padding) stay finite.
MASKED = -1e10
# t5x's initialisers; fan-in of the attention kernels spans the (heads, head_dim) axes.
dense_init = nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal')
embedding_init = nn.initializers.normal(stddev=1.0)
relative_bias_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')
qkv_init = nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal', in_axis=0,
                                            out_axis=(1, 2))
attention_out_init = nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal',
                                                      in_axis=(0, 1), out_axis=2)


def param_with_axes(module: nn.Module, name: str, init, shape, axes):
  """`module.param` with logical axis names attached where the parameter is born."""
  return module.param(name, nn.with_logical_partitioning(init, axes), shape,
                      jnp.dtype(module.config.param_dtype))


def dense(module: nn.Module, name: str, x, equation: str, shape, axes, init=dense_init):
  """A bias-free projection `einsum(equation, x, kernel)` in the compute dtype.

  Its output is named config_lib.PROJECTION for the remat policies: to `jax.checkpoint`
  it is a custom-VJP call, not a dot."""
  kernel = param_with_axes(module, name, init, shape, axes)
  dtype = jnp.dtype(module.config.dtype)
  return checkpoint_name(accumulating_einsum(equation, x.astype(dtype), kernel.astype(dtype)),
                         config_lib.PROJECTION)


def _einsum_f32(equation: str, a, b):
  return jnp.einsum(equation, a, b, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def accumulating_einsum(equation: str, x, kernel, float32_out: bool = False):
  """`einsum(equation, x, kernel)` of same-dtype operands, accumulated in
  float32 and returned in their dtype (in float32 if `float32_out`); its
  gradients are computed the same way, from the cotangent in their dtype.

  For a projection ('ble,ef->blf': every index of one operand also appears in
  the other or in the output). TPUs and GPUs accumulate bf16 matmuls in f32
  anyway, so the numbers are the usual ones; saying so explicitly lets XLA:CPU
  run bf16 x bf16 -> f32 dots natively (YNNPACK, AVX512-BF16) instead of
  converting both operands to f32 first. The hand-written gradients are two
  more such einsums; XLA:CPU runs them faster than the transposes JAX derives
  (BENCHMARKS.md), in f32 as in bf16. `float32_out` is for the vocab logits,
  which the loss and sampling read in f32: kept as accumulated, not rounded
  to bf16 and converted back.
  """
  out = _einsum_f32(equation, x, kernel)
  return out if float32_out else out.astype(x.dtype)


def _accumulating_einsum_fwd(equation, x, kernel, float32_out):
  return accumulating_einsum(equation, x, kernel, float32_out), (x, kernel)


def _accumulating_einsum_bwd(equation, float32_out, residuals, grad):
  del float32_out  # the cotangent is taken in the operands' dtype either way
  x, kernel = residuals
  grad = grad.astype(x.dtype)
  operands, out = equation.split('->')
  x_axes, kernel_axes = operands.split(',')
  grad_x = _einsum_f32(f'{out},{kernel_axes}->{x_axes}', grad, kernel).astype(x.dtype)
  grad_kernel = _einsum_f32(f'{x_axes},{out}->{kernel_axes}', x, grad).astype(kernel.dtype)
  return grad_x, grad_kernel


accumulating_einsum.defvjp(_accumulating_einsum_fwd, _accumulating_einsum_bwd)


def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32,
                             max_distance=128):
  """T5's bucketing of `relative_position = key_position - query_position`.

  Half the buckets hold exact distances, the rest grow logarithmically up to
  `max_distance`; anything further shares the last bucket. Unidirectional
  (causal) attention only looks back, so future positions fall into bucket 0.
  Float32 arithmetic with the same epsilon as Mesh TensorFlow and t5x, so the
  integers match theirs exactly.
  """
  relative_position = jnp.asarray(relative_position)
  bucket = 0
  distance = -relative_position
  if bidirectional:
    num_buckets //= 2
    bucket += (distance < 0).astype(jnp.int32) * num_buckets
    distance = jnp.abs(distance)
  else:
    distance = jnp.maximum(distance, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  log_ratio = jnp.log(distance.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
  large = max_exact + (log_ratio / np.log(max_distance / max_exact) *
                       (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(is_small, distance, large)


def attention_dtype(cfg: ModelConfig):
  """What attention's scores, softmax and position bias are computed in.

  On a CPU, float32: XLA:CPU multiplies batched bf16 dots in f32 anyway, and
  rounding scores, weights and the bias to bf16 between them cost more than
  it saved (bf16 `bench` training ~15% faster, decoding ~17%; BENCHMARKS.md).
  TPUs and GPUs multiply bf16 natively and keep the compute dtype.
  """
  return jnp.dtype(jnp.float32 if jax.default_backend() == 'cpu' else cfg.dtype)


class RMSNorm(nn.Module):
  """T5 LayerNorm: scale by the root mean square; no mean subtraction, no bias."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) +
                          self.config.layer_norm_epsilon)
    scale = param_with_axes(self, 'scale', nn.initializers.ones, (x.shape[-1],), ('embed',))
    dtype = jnp.dtype(self.config.dtype)
    return x.astype(dtype) * scale.astype(dtype)


class Embedding(nn.Module):
  """The token table [vocab, embed]; tied, also the output projection."""
  config: ModelConfig

  def setup(self):
    cfg = self.config
    self.embedding = param_with_axes(self, 'embedding', embedding_init,
                                     (cfg.vocab_size, cfg.d_model), ('vocab', 'embed'))

  def __call__(self, tokens):
    """tokens [batch, length] -> [batch, length, embed]. Only the gathered rows
    are cast: XLA:CPU gathers from a bf16 table by converting all of it first."""
    return jnp.take(self.embedding, tokens, axis=0).astype(self.config.dtype)


class RelativePositionBias(nn.Module):
  """One [heads, buckets] table turned into an additive attention bias."""
  config: ModelConfig

  def setup(self):
    cfg = self.config
    self.table = param_with_axes(self, 'rel_embedding', relative_bias_init,
                                 (cfg.num_heads, cfg.relative_attention_num_buckets),
                                 ('heads', 'relpos_buckets'))

  def _table(self):
    """[heads, buckets] in attention_dtype, holding compute-dtype values: the
    same bias from stored parameters as from decoding.inference_params'."""
    return self.table.astype(self.config.dtype).astype(attention_dtype(self.config))

  def _buckets(self, relative):
    cfg = self.config
    return relative_position_bucket(relative, bidirectional=False,
                                    num_buckets=cfg.relative_attention_num_buckets,
                                    max_distance=cfg.relative_attention_max_distance)

  def __call__(self, query_positions, key_positions):
    """positions: [batch, q_length], [batch, k_length] -> bias [batch, heads, q, k],
    any positions (the cache's slots hold them out of order); no gradient path
    needs it, so a gather is fine."""
    relative = key_positions[:, None, :] - query_positions[:, :, None]  # [batch, q, k]
    bias = jnp.take(self._table().T, self._buckets(relative), axis=0)  # [batch, q, k, heads]
    return jnp.transpose(bias, (0, 3, 1, 2))

  def in_row(self, batch: int, length: int):
    """bias [batch, heads, length, length] from in-row distances k - q: the bias
    of any positions that advance by one per token within a segment (packed
    rows, the default), pairs across segments being masked anyway.

    Built without a [batch, q, k] gather, whose gradient is a scatter-add of
    batch x heads x q x k values into heads x buckets cells: on a GPU those
    atomic adds took 80% of the 2B train step (BENCHMARKS.md). Here the table
    is read once per distance (a one-hot matmul, as t5x does) and laid out
    with the relative-shift trick, whose gradient is reshapes and sums.
    Both broadcasts are einsums with ones, so that their gradients are dots:
    XLA:CPU runs a plain broadcast's transpose, a reduction over a major axis,
    ~40x slower (`bench`'s bias and its gradient: 32 ms, as fast as the
    gather, against 118 ms with plain broadcasts)."""
    cfg = self.config
    dtype = attention_dtype(cfg)
    distances = np.arange(-(length - 1), length)  # index d holds k - q = d - (length - 1)
    one_hot = jax.nn.one_hot(self._buckets(distances), cfg.relative_attention_num_buckets,
                             dtype=dtype)
    by_distance = jnp.einsum('hn,dn->hd', self._table(), one_hot)  # [heads, 2L-1]
    # Row q of the result is by_distance[:, length-1-q : 2*length-1-q]: laid end to end,
    # rows of 2L (one pad), read back as rows of 2L - 1, each starts one earlier.
    padded = jnp.pad(by_distance, ((0, 0), (0, 1)))  # [heads, 2L]
    tiled = jnp.einsum('q,hd->hqd', jnp.ones(length, dtype), padded)  # [heads, L, 2L]
    flat = tiled.reshape(cfg.num_heads, 2 * length * length)
    shifted = flat[:, length - 1:length - 1 + length * (2 * length - 1)]
    bias = shifted.reshape(cfg.num_heads, length, 2 * length - 1)[:, :, :length]
    return jnp.einsum('b,hqk->bhqk', jnp.ones(batch, dtype), bias)


def rotary_embedding(x, positions, max_wavelength: int):
  """RoPE (Su et al. 2021): x [batch, length, heads, head_dim] with each pair
  (x[i], x[i + head_dim/2]) turned by the angle position / max_wavelength^(2i/head_dim),
  positions [batch, length]. A query and a key so turned have a dot product that
  depends only on their distance. Pairs are split in halves (GPT-NeoX, gemma);
  Llama's adjacent pairs are the same map up to a fixed permutation of head_dim.
  """
  half = x.shape[-1] // 2
  timescale = max_wavelength ** (2 * jnp.arange(half, dtype=jnp.float32) / x.shape[-1])
  angle = positions[:, :, None, None].astype(jnp.float32) / timescale  # [batch, length, 1, half]
  sin, cos = jnp.sin(angle), jnp.cos(angle)
  first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([first * cos - second * sin, second * cos + first * sin],
                         axis=-1).astype(x.dtype)


def causal_blocks(length: int, blocks: int):
  """(start, end) of `blocks` near-equal blocks of query positions in [0, length).

  Without a cache, block i attends only to keys [0, end_i): the causal mask's
  upper triangle of blocks, all masked, is never computed, as flash and splash
  attention skip masked tiles. Plain slices and dots, on every backend; on a
  CPU 4 blocks make `bench`'s attention and its gradient 1.7x faster
  (BENCHMARKS.md).
  """
  bounds = [length * index // blocks for index in range(blocks + 1)]
  return [(start, end) for start, end in zip(bounds, bounds[1:]) if start < end]


class MultiHeadAttention(nn.Module):
  """Self-attention with heads x head_dim independent of d_model, and optionally
  fewer key/value heads than query heads (grouped-query attention)."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x, attention_bias, positions, cached=None, cache_index=None, prefix=None):
    """x: [batch, length, embed]; attention_bias: [batch, heads or 1, q, k] (the
    mask, plus the relative position bias if the model uses it); positions
    [batch, length] turn queries and keys under RoPE.

    Decoding passes `cached` = this layer's (keys, values) [batch, kv_heads,
    slots, head_dim]: the chunk's keys and values are written at slot
    `cache_index` (in place under jit), the queries attend over all slots
    (`attention_bias` [batch, heads, q, slots] masks the empty ones), and the
    updated (keys, values) are returned. Heads before slots, so neither
    einsum transposes the cache. A shared `prefix` (keys, values) [batch /
    copies, kv_heads, prefix slots, head_dim] comes before the slots: each
    group of `copies` rows attends to its prefix row in place, and
    `attention_bias` covers [prefix slots + slots].

    Grouped-query keys and values are repeated to the query heads just before
    the einsums: the cache and the projections hold kv_heads only, which is
    what GQA saves; the attention arithmetic is multi-head's. Without a cache
    the queries attend in `config.causal_blocks` blocks (causal_blocks).
    """
    cfg = self.config
    def query_init(*args):
      return qkv_init(*args) / np.sqrt(cfg.head_dim)
    query = dense(self, 'query', x, 'ble,ehd->blhd', (cfg.d_model, cfg.num_heads, cfg.head_dim),
                  ('embed', 'heads', 'kv'), query_init)
    query = nn.with_logical_constraint(query, ('batch', 'length', 'heads', 'kv'))
    key, value = (  # [batch, length, kv_heads, head_dim]
        nn.with_logical_constraint(
            dense(self, name, x, 'ble,ehd->blhd', (cfg.d_model, cfg.kv_heads, cfg.head_dim),
                  ('embed', 'kv_heads', 'kv'), qkv_init),
            ('batch', 'length', 'kv_heads', 'kv'))
        for name in ('key', 'value'))
    if cfg.position_encoding == 'rope':
      query, key = (rotary_embedding(y, positions, cfg.rope_max_wavelength) for y in (query, key))
    groups = cfg.num_heads // cfg.kv_heads

    # Heads before positions from here on, in training as in decoding: XLA:CPU
    # runs the batched matmuls ~10x faster so for short queries, and a few
    # percent faster in training (BENCHMARKS.md); the cache is kept so too.
    query, key, value = (jnp.swapaxes(y, 1, 2) for y in (query, key, value))  # [b, heads, l, d]
    if cached is not None:
      at = (0, 0, cache_index, 0)
      cached = tuple(  # [batch, kv_heads, slots, head_dim]
          jax.lax.dynamic_update_slice(old, new.astype(old.dtype), at)
          for old, new in zip(cached, (key, value)))
      if jax.default_backend() == 'cpu':
        # XLA:CPU fuses the slot's write into each einsum that reads the
        # cache: it rebuilds the whole cache per reader and copies it for the
        # write, every layer, every step. The barrier leaves one write, in
        # place (a research line's 1024-slot cache: 13.3 -> 11.0 ms per
        # token; sample-and-rank in bf16: 19.6 -> 18.0 ms per step;
        # BENCHMARKS.md). Unmeasured on accelerators, which skip it.
        cached = jax.lax.optimization_barrier(cached)
      key, value = cached
    dtype = attention_dtype(cfg)  # f32 on a CPU
    query, key, value = (y.astype(dtype) for y in (query, key, value))
    key, value = (jnp.repeat(y, groups, axis=1) for y in (key, value))  # [b, heads, k, d]
    dropout = nn.Dropout(cfg.dropout_rate)

    def attend(query, key, value, bias, prefix=None):
      logits = jnp.einsum('bhqd,bhkd->bhqk', query, key)
      if prefix is not None:  # its scores come first, as its slots do in attention_bias
        shared_key, shared_value = (jnp.repeat(y.astype(dtype), groups, axis=1)
                                    for y in prefix)  # [batch / copies, heads, p, head_dim]
        grouped = query.reshape(shared_key.shape[0], -1, *query.shape[1:])  # [b/c, c, h, q, d]
        shared_logits = jnp.einsum('bchqd,bhpd->bchqp', grouped, shared_key)
        logits = jnp.concatenate([shared_logits.reshape(*logits.shape[:3], -1), logits], axis=-1)
      logits = logits.astype(jnp.float32) + bias.astype(jnp.float32)
      weights = jax.nn.softmax(logits, axis=-1).astype(dtype)  # [batch, heads, q, (p +) k]
      weights = dropout(weights, deterministic=self.deterministic)
      context = 0
      if prefix is not None:
        shared_weights, weights = jnp.split(weights, [shared_key.shape[2]], axis=-1)
        shared_weights = shared_weights.reshape(*grouped.shape[:-1], -1)  # [b/c, c, h, q, p]
        context = jnp.einsum('bchqp,bhpd->bchqd', shared_weights, shared_value).reshape(query.shape)
      return context + jnp.einsum('bhqk,bhkd->bhqd', weights, value)  # [b, heads, q, head_dim]

    if cached is None:  # causal: a block of queries never attends past its last position
      context = jnp.concatenate([
          attend(query[:, :, start:end], key[:, :, :end], value[:, :, :end],
                 attention_bias[..., start:end, :end])
          for start, end in causal_blocks(query.shape[2], cfg.causal_blocks)], axis=2)
    else:
      context = attend(query, key, value, attention_bias, prefix)
    context = context.astype(cfg.dtype)
    out = dense(self, 'out', context, 'bhqd,hde->bqe', (cfg.num_heads, cfg.head_dim, cfg.d_model),
                ('heads', 'kv', 'embed'), attention_out_init)
    out = nn.with_logical_constraint(out, ('batch', 'length', 'embed'))
    return out, cached


class GatedMlp(nn.Module):
  """wo(act_0(x wi_0) * act_1(x wi_1) * ...); ('gelu', 'linear') is gated-GELU."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    hidden = []
    for index, activation in enumerate(cfg.activations):
      name = 'wi' if len(cfg.activations) == 1 else f'wi_{index}'
      projected = dense(self, name, x, 'ble,ef->blf', (cfg.d_model, cfg.d_ff), ('embed', 'mlp'))
      hidden.append(config_lib.ACTIVATIONS[activation](projected))  # [batch, length, mlp]
    hidden = functools.reduce(operator.mul, hidden)
    hidden = nn.with_logical_constraint(hidden, ('batch', 'length', 'mlp'))
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=self.deterministic)
    out = dense(self, 'wo', hidden, 'blf,fe->ble', (cfg.d_ff, cfg.d_model), ('mlp', 'embed'))
    return nn.with_logical_constraint(out, ('batch', 'length', 'embed'))


class AttributeHeads(nn.Module):
  """One logistic classifier per attribute on the final hidden state:
  [batch, length, embed] -> float32 logits [batch, length, attributes].

  The alternative to reading P('1') from the LM head (finetune.discriminator =
  'heads'); a bias per attribute learns each attribute's base rate.
  """
  config: ModelConfig
  num_attributes: int

  @nn.compact
  def __call__(self, x):
    kernel = param_with_axes(self, 'kernel', dense_init, (self.config.d_model, self.num_attributes),
                             ('embed', 'attributes'))
    bias = param_with_axes(self, 'bias', nn.initializers.zeros, (self.num_attributes,),
                           ('attributes',))
    logits = accumulating_einsum('ble,ea->bla', x, kernel.astype(x.dtype))  # [b, l, attributes]
    logits = logits.astype(jnp.float32) + bias.astype(jnp.float32)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'attributes'))
