"""Cached decoding is the full forward pass: same logits at every step."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamda_jax.config import ModelConfig
from lamda_jax.model.decoder import Decoder
from lamda_jax.model.kv_cache import KVCache

# max_distance 12 < sequence length, so far-away buckets are exercised too.
CFG = ModelConfig(num_layers=3, d_model=32, num_heads=4, head_dim=8, d_ff=48, vocab_size=97,
                  dtype='float32', relative_attention_num_buckets=8,
                  relative_attention_max_distance=12)
LENGTH = 24
# Llama 2's options: the cache holds 2 key/value heads for 4 query heads, turned by RoPE.
ROPE_GQA = {'position_encoding': 'rope', 'num_kv_heads': 2}


def _setup(scan_layers, **changes):
  cfg = dataclasses.replace(CFG, scan_layers=scan_layers, **changes)
  tokens = jax.random.randint(jax.random.key(0), (2, LENGTH), 3, cfg.vocab_size)
  params = jax.jit(Decoder(cfg).init)(jax.random.key(42), tokens)['params']
  return cfg, params, tokens


def _stepwise(cfg, params, tokens, positions, segment_ids, chunks, grow=False):
  """Logits of `tokens` fed to a cache in consecutive chunks of the given
  sizes; with `grow`, the cache holds only the slots written so far and grows
  before each chunk to hold it."""
  apply = jax.jit(lambda p, t, pos, seg, c: Decoder(cfg).apply({'params': p}, t, pos, seg,
                                                               cache=c))
  cache = KVCache.empty(cfg, tokens.shape[0], chunks[0] if grow else tokens.shape[1])
  outputs, start = [], 0
  for size in chunks:
    end = start + size
    if end > cache.positions.shape[1]:
      cache = cache.with_slots(end)
    logits, cache = apply(params, tokens[:, start:end], positions[:, start:end],
                          segment_ids[:, start:end], cache)
    outputs.append(logits)
    start = end
  assert int(cache.length) == tokens.shape[1]
  return jnp.concatenate(outputs, axis=1)


@pytest.mark.parametrize('scan_layers', [False, True])
@pytest.mark.parametrize('prompt', [1, 7, 16])
def test_cached_steps_equal_the_full_pass(scan_layers, prompt):
  _check_prompt_then_steps(*_setup(scan_layers), prompt)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_a_cache_grown_before_each_chunk_equals_the_full_pass(scan_layers):
  cfg, params, tokens = _setup(scan_layers)
  positions = jnp.broadcast_to(jnp.arange(LENGTH), tokens.shape)
  full = Decoder(cfg).apply({'params': params}, tokens)
  cached = _stepwise(cfg, params, tokens, positions, jnp.ones_like(tokens), [5, 1, 7, 1] + [2] * 5,
                     grow=True)
  np.testing.assert_allclose(cached, full, atol=2e-5, rtol=1e-5)
  with pytest.raises(ValueError, match='3 slots cannot hold the 5'):
    KVCache.empty(cfg, 1, 5).with_slots(3)


def _check_prompt_then_steps(cfg, params, tokens, prompt):
  positions = jnp.broadcast_to(jnp.arange(LENGTH), tokens.shape)
  segment_ids = jnp.ones_like(tokens)
  full = Decoder(cfg).apply({'params': params}, tokens)
  cached = _stepwise(cfg, params, tokens, positions, segment_ids,
                     [prompt] + [1] * (LENGTH - prompt))
  np.testing.assert_allclose(cached, full, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_rope_and_grouped_query_cache_holds_the_kv_heads_and_equals_the_full_pass(scan_layers):
  cfg, params, tokens = _setup(scan_layers, **ROPE_GQA)
  empty = KVCache.empty(cfg, 2, LENGTH)
  keys = empty.keys if scan_layers else empty.keys[0]
  assert keys.shape[-3:] == (2, LENGTH, cfg.head_dim)  # [kv_heads, slots, head_dim]
  _check_prompt_then_steps(cfg, params, tokens, prompt=7)


@pytest.mark.parametrize('scan_layers,changes', [(False, {}), (True, {}), (True, ROPE_GQA)],
                         ids=['unrolled', 'scanned', 'scanned-rope-gqa'])
def test_cached_steps_equal_the_full_pass_on_packed_rows(scan_layers, changes):
  """Two packed examples; the second is continued token by token after a prefill
  that spans the boundary, and a chunk of three (a scoring suffix) at the end."""
  cfg, params, tokens = _setup(scan_layers, **changes)
  first = 9
  segment_ids = jnp.asarray([[1] * first + [2] * (LENGTH - first),
                             [1] * (LENGTH - 4) + [0] * 4])  # second row ends in padding
  positions = jnp.asarray([list(range(first)) + list(range(LENGTH - first)),
                           list(range(LENGTH - 4)) + [0] * 4])
  full = Decoder(cfg).apply({'params': params}, tokens, positions, segment_ids)
  chunks = [12] + [1] * (LENGTH - 15) + [3]
  cached = _stepwise(cfg, params, tokens, positions, segment_ids, chunks)
  real = np.asarray(segment_ids != 0)
  np.testing.assert_allclose(np.asarray(cached)[real], np.asarray(full)[real], atol=2e-5,
                             rtol=1e-5)


@pytest.mark.parametrize('scan_layers,changes', [(False, {}), (True, {}), (True, ROPE_GQA)],
                         ids=['unrolled', 'scanned', 'scanned-rope-gqa'])
def test_candidates_reading_a_shared_prompt_equal_full_passes(scan_layers, changes):
  """Two padded prompts (10 and 7 tokens) shared by 3 candidates each; every
  candidate writes its own continuation (a token, then a chunk of two, one
  candidate ending early in padding) and each real token's logits are a full
  pass's over `<prompt> <continuation>`."""
  cfg, params, tokens = _setup(scan_layers, **changes)
  apply = jax.jit(lambda t, pos, seg, c: Decoder(cfg).apply({'params': params}, t, pos, seg,
                                                            cache=c))
  lengths = np.asarray([10, 7])
  prompt_segments = (np.arange(10)[None] < lengths[:, None]).astype(np.int32)
  prompt_positions = np.where(prompt_segments, np.arange(10)[None], 0)
  _, prompt_cache = apply(tokens[:, :10], prompt_positions, prompt_segments,
                          KVCache.empty(cfg, 2, 10))
  cache = prompt_cache.shared_by(3, 4)
  assert cache.positions.shape == (6, 4) and cache.prefix is prompt_cache
  # Candidate c of prompt i continues with its own tokens from tokens[i, 12 + 3c:].
  follow = np.stack([np.asarray(tokens[i, 12 + 3 * c:15 + 3 * c]) for i in range(2)
                     for c in range(3)])  # [6, 3]
  segments = np.ones_like(follow)
  segments[4, 1:] = 0  # prompt 1's second candidate ends after one token
  positions = np.repeat(lengths, 3)[:, None] + np.arange(3)[None]
  first, cache = apply(follow[:, :1], positions[:, :1], segments[:, :1], cache)
  rest, cache = apply(follow[:, 1:], positions[:, 1:], segments[:, 1:], cache)
  assert int(cache.length) == 3 and cache.prefix is not None
  cached = np.concatenate([first, rest], axis=1)
  for row in range(6):
    prompt = np.asarray(tokens[row // 3, :lengths[row // 3]])
    real = int(segments[row].sum())
    full = Decoder(cfg).apply({'params': params},
                              np.concatenate([prompt, follow[row, :real]])[None])
    np.testing.assert_allclose(cached[row, :real], full[0, len(prompt):], atol=2e-5, rtol=1e-5)


def test_a_shared_prefix_is_not_shared_again():
  cfg, _, _ = _setup(False)
  with pytest.raises(ValueError, match='already reads a shared prefix'):
    KVCache.empty(cfg, 2, 4).shared_by(3, 4).shared_by(2, 4)


def test_decoding_steps_write_their_slot_in_place_without_copying_the_cache():
  """XLA:CPU fused each new slot's write into every einsum reading the cache,
  so it rebuilt the cache per reader and copied it for the write: a copy of
  every layer's whole cache per step (BENCHMARKS.md, "Research loop")."""
  cfg, params, tokens = _setup(False, dtype='bfloat16')
  slots = 64

  def steps(params, cache):
    def step(index, cache):
      position = jnp.full((2, 1), index, jnp.int32)
      _, cache = Decoder(cfg).apply({'params': params}, tokens[:, :1], position,
                                    jnp.ones((2, 1), jnp.int32), cache=cache)
      return cache
    return jax.lax.fori_loop(0, 8, step, cache)

  hlo = jax.jit(steps, donate_argnums=1).lower(params, KVCache.empty(cfg, 2, slots)).compile().as_text()
  cache_shape = rf'\[2,{cfg.kv_heads},{slots},{cfg.head_dim}\]'
  assert not re.findall(rf'= \w+{cache_shape}\S* copy\(', hlo)
