"""The decoder's key/value cache, for incremental decoding and prefix reuse.

A call of the decoder with a cache runs only a new chunk of tokens (a prompt,
one sampled token, a discriminator's attribute suffix) against the cached
slots and returns the cache with the chunk written into the next slots.
"""

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax.config import ModelConfig

CACHE_AXES = ('layers', 'batch', 'kv_heads', 'length', 'kv')


def _constrain(x):
  """A layer's [batch, kv_heads, slots, head_dim] cache, or the scanned [layers, ...] stack."""
  return nn.with_logical_constraint(x, CACHE_AXES[-x.ndim:])


@flax.struct.dataclass
class KVCache:
  """Keys and values of every token seen so far, for incremental decoding.

  All rows advance together: `length` slots are filled, the rest are empty
  (segment id 0, never attended). Positions and segment ids are kept per slot
  so the relative bias and the masks of new tokens are exactly a full pass's.
  Unrolled layers keep one array per layer, so each layer writes its new slot
  in place; scanned layers keep one stacked array, as nn.scan slices it.

  A `prefix` (`shared_by`) is a cache of fewer rows whose slots come before
  this one's: consecutive groups of rows read the same prefix row, as sampled
  candidates read their prompt. It is held once, not once per candidate, and
  is read, never written.
  """
  keys: Any  # per layer [batch, kv_heads, slots, head_dim]: a tuple, or stacked [layers, ...]
  values: Any  # same as keys
  positions: jax.Array  # [batch, slots]
  segment_ids: jax.Array  # [batch, slots]; 0 = empty or padding
  length: jax.Array  # [] slots filled
  prefix: 'KVCache | None' = None  # [batch / copies, ...]: slots before these, shared

  @classmethod
  def empty(cls, cfg: ModelConfig, batch: int, slots: int) -> 'KVCache':
    shape = (batch, cfg.kv_heads, slots, cfg.head_dim)

    def zeros():
      if cfg.scan_layers:
        return _constrain(jnp.zeros((cfg.num_layers, *shape), cfg.dtype))
      return tuple(_constrain(jnp.zeros(shape, cfg.dtype)) for _ in range(cfg.num_layers))

    return cls(zeros(), zeros(), jnp.zeros((batch, slots), jnp.int32),
               jnp.zeros((batch, slots), jnp.int32), jnp.zeros((), jnp.int32))

  def with_slots(self, slots: int) -> 'KVCache':
    """This cache with `slots` slots, the added ones empty: a cache that
    grows with its prompt attends, at every step, over only the slots it may
    have used, not over the most it could ever hold."""
    held = self.positions.shape[1]
    if slots < held:
      raise ValueError(f'with_slots: {slots} slots cannot hold the {held} this cache has')
    return _with_slots(self, slots)

  def shared_by(self, copies: int, slots: int) -> 'KVCache':
    """An empty cache of `slots` slots for `copies` rows per row of this one,
    which becomes their shared prefix: each candidate reads its prompt's keys
    in place instead of a copy of them (16 candidates: 1/16 of the prompt's
    cache memory and of the bytes each decoding step reads for it)."""
    if self.prefix is not None:
      raise ValueError('shared_by: this cache already reads a shared prefix')
    def empty(x):  # [..., batch, kv_heads, slots, head_dim] -> [..., batch * copies, ...]
      return _constrain(jnp.zeros((*x.shape[:-4], x.shape[-4] * copies, x.shape[-3], slots,
                                   x.shape[-1]), x.dtype))
    rows = self.positions.shape[0] * copies
    return KVCache(jax.tree.map(empty, self.keys), jax.tree.map(empty, self.values),
                   jnp.zeros((rows, slots), jnp.int32), jnp.zeros((rows, slots), jnp.int32),
                   jnp.zeros((), jnp.int32), prefix=self)


@functools.partial(jax.jit, static_argnames='slots')
def _with_slots(cache: KVCache, slots: int) -> KVCache:
  """Jitted: outside jit, the cache's sharding constraint rejects a mesh axis
  that does not divide its rows (one row on a data-parallel mesh)."""
  held = cache.positions.shape[1]

  def grown(x, axis):  # axis: the slots axis, counted from the end
    widths = [(0, 0)] * x.ndim
    widths[x.ndim + axis] = (0, slots - held)
    return jnp.pad(x, widths)

  keys, values = (jax.tree.map(lambda x: _constrain(grown(x, -2)), kv)
                  for kv in (cache.keys, cache.values))
  return cache.replace(keys=keys, values=values, positions=grown(cache.positions, -1),
                       segment_ids=grown(cache.segment_ids, -1))


def cached_attention_mask(segment_ids, slot_segment_ids, first_slot):
  """The mask of a chunk written from `first_slot` on: [batch, 1, q, slots].

  Causal in slot order, same segment, and never an empty slot (segment id 0).
  """
  length, slots = segment_ids.shape[1], slot_segment_ids.shape[1]
  causal = jnp.arange(slots)[None, :] <= (first_slot + jnp.arange(length))[:, None]  # [q, slots]
  same_segment = segment_ids[:, :, None] == slot_segment_ids[:, None, :]
  filled = (slot_segment_ids != 0)[:, None, :]
  return (causal[None] & same_segment & filled)[:, None]


def pad_prompts(prompt_ids: list[list[int]], width: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Prompts (token ids without the leading 0 every training segment starts
  with) -> model inputs [batch, max(width, longest + 1)], right-padded, and their lengths."""
  lengths = np.asarray([len(ids) + 1 for ids in prompt_ids], np.int32)
  inputs = np.zeros((len(prompt_ids), max(width, int(lengths.max()))), np.int32)
  for row, ids in enumerate(prompt_ids):
    inputs[row, 1:len(ids) + 1] = ids
  return inputs, lengths


def prefill(model, params, inputs, lengths, slots: int, vocab_ids=None):
  """Right-padded prompts [batch, length] (`lengths` [batch]) run once into a
  fresh cache of `slots` slots -> (logits [batch, length, vocab or len(vocab_ids)],
  cache). Padding is segment 0, so it is never attended to."""
  batch, length = inputs.shape
  is_prompt = jnp.arange(length)[None, :] < lengths[:, None]
  positions = jnp.where(is_prompt, jnp.arange(length)[None, :], 0)
  return model.apply({'params': params}, inputs, positions, is_prompt.astype(jnp.int32),
                     cache=KVCache.empty(model.config, batch, slots), vocab_ids=vocab_ids)
