"""An independent numpy LaMDA decoder, written from the paper and T5.1.1, that the
Flax model is checked against. It shares no code with lamda_jax."""

import math

import numpy as np


def bucket(relative_position: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
  """T5's relative position bucket (Raffel et al. 2020; Mesh TensorFlow), in float64."""
  n = -relative_position
  bucket_offset = 0
  if bidirectional:
    num_buckets //= 2
    bucket_offset = num_buckets if n < 0 else 0
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return bucket_offset + n
  large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) *
                          (num_buckets - max_exact))
  return bucket_offset + min(large, num_buckets - 1)


def gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    'gelu': gelu_tanh,
    'silu': lambda x: x / (1 + np.exp(-x)),
    'relu': lambda x: np.maximum(x, 0),
    'linear': lambda x: x,
}


def rms_norm(x, scale, eps):
  return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * scale


def gated_mlp(x, params, activations):
  """wo(prod_i act_i(x @ wi_i))."""
  names = ['wi'] if len(activations) == 1 else [f'wi_{i}' for i in range(len(activations))]
  hidden = np.ones(x.shape[:-1] + (params['wo'].shape[0],))
  for name, activation in zip(names, activations):
    hidden = hidden * ACTIVATIONS[activation](x @ params[name])
  return hidden @ params['wo']


def rope(x, positions, max_wavelength):
  """x [b, h, l, d]: the halves (x[:d/2], x[d/2:]) as one complex number per pair,
  multiplied by exp(i * position * max_wavelength^(-2j/d))."""
  half = x.shape[-1] // 2
  frequency = max_wavelength ** (-np.arange(half) * 2 / x.shape[-1])
  z = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * positions[:, None, :, None] * frequency)
  return np.concatenate([z.real, z.imag], axis=-1)


def attention(x, params, bias, mask, positions=None, max_wavelength=None):
  """x [b, l, e]; bias [b, h, q, k]; mask [b, q, k] bool; `positions` [b, l]
  turn queries and keys (RoPE). Fewer key/value heads than query heads are
  shared by consecutive query heads (grouped-query attention)."""
  q = np.einsum('ble,ehd->bhld', x, params['query'])
  k = np.einsum('ble,ehd->bhld', x, params['key'])
  v = np.einsum('ble,ehd->bhld', x, params['value'])
  if positions is not None:
    q, k = rope(q, positions, max_wavelength), rope(k, positions, max_wavelength)
  query_head = np.arange(q.shape[1])
  k, v = k[:, query_head * k.shape[1] // q.shape[1]], v[:, query_head * v.shape[1] // q.shape[1]]
  logits = q @ np.swapaxes(k, -1, -2) + bias
  mask = mask[:, None]
  weights = np.where(mask, np.exp(logits - np.where(mask, logits, -np.inf).max(-1, keepdims=True,
                                                                               initial=0)), 0)
  weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-30)  # padding rows: all 0
  return np.einsum('bhqd,hde->bqe', weights @ v, params['out'])


def decoder(params, cfg, tokens, positions, segment_ids):
  """Logits [b, l, vocab]; padding (segment 0) attends to nothing."""
  params = {k: v for k, v in params.items()}
  x = params['token_embedder']['embedding'][tokens]
  rope_positions = positions if cfg.position_encoding == 'rope' else None
  if rope_positions is None:
    relative = positions[:, None, :] - positions[:, :, None]  # key - query
    buckets = np.vectorize(bucket)(relative, False, cfg.relative_attention_num_buckets,
                                   cfg.relative_attention_max_distance)
    bias = np.moveaxis(params['relpos_bias']['rel_embedding'][:, buckets], 0, 1)
  else:
    bias = np.zeros(())
  length = tokens.shape[1]
  mask = (np.tril(np.ones((length, length), bool))[None] &
          (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, None, :] != 0))
  for i in range(cfg.num_layers):
    if 'layers' in params:  # scanned: layer i is index i of every leaf
      layer = _index_tree(params['layers'], i)
    else:
      layer = params[f'layers_{i}']
    h = rms_norm(x, layer['pre_attention_norm']['scale'], cfg.layer_norm_epsilon)
    x = x + attention(h, layer['attention'], bias, mask, rope_positions, cfg.rope_max_wavelength)
    h = rms_norm(x, layer['pre_mlp_norm']['scale'], cfg.layer_norm_epsilon)
    x = x + gated_mlp(h, layer['mlp'], cfg.activations)
  x = rms_norm(x, params['final_norm']['scale'], cfg.layer_norm_epsilon)
  if cfg.tie_embeddings:
    return x @ params['token_embedder']['embedding'].T / np.sqrt(cfg.d_model)
  return x @ params['logits_dense']


def _index_tree(tree, i):
  if isinstance(tree, dict):
    return {k: _index_tree(v, i) for k, v in tree.items()}
  return tree[i]
