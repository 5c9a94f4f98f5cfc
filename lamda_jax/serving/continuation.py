"""A prompt that only grows, decoded a line at a time through one KV cache.

The research loop (§6.2) asks the model for one line after another about one
transcript that only grows: context and draft, then each query and its
results. `Continuation.line(ids)` runs through the model only the tokens of
`ids` past what its cache already holds, then decodes one token per step,
each run into the cache, until a stop token. A line re-rendered differently
from how it was decoded rewinds the cache to where the two token sequences
part (the longest common prefix); nothing before it runs again.

Slots beyond the cache's length are stale and harmless: a token written at
slot s attends only slots <= s, which are always rewritten first. Chunks are
padded to a power of two (at least `MIN_CHUNK`), and the cache grows by powers
of two as the prompt does, so a conversation compiles a handful of shapes, not
one per result length, and each decoded token attends over about the slots in
use, not the most the window could need.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax.model.kv_cache import KVCache
from lamda_jax.serving import decoding

MIN_CHUNK = 16


@functools.partial(jax.jit, static_argnames='model', donate_argnames='cache')
def extend(params, cache: KVCache, tokens, count, *, model):
  """tokens [1, chunk], the first `count` real and the rest padding, appended
  at `cache.length` -> (logits after the last real token [vocab], the cache
  holding `count` more tokens)."""
  chunk = tokens.shape[1]
  offsets = jnp.arange(chunk)[None]  # [1, chunk]
  real = offsets < count
  positions = jnp.where(real, cache.length + offsets, 0)  # slot i holds position i
  logits, cache = model.apply({'params': params}, tokens, positions, real.astype(jnp.int32),
                              cache=cache)
  return logits[0, count - 1], cache.replace(length=cache.length - chunk + count)


@functools.partial(jax.jit, static_argnames=('model', 'sampling'), donate_argnames='cache')
def decode_line(params, cache: KVCache, logits, stop_ids, rng, *, model,
                sampling: decoding.Sampling):
  """Tokens after `logits` [vocab], each run into the cache, until one of
  `stop_ids` or `sampling.max_new_tokens` -> (tokens [max_new], how many were
  made (the stop token included), the cache)."""
  steps = sampling.max_new_tokens
  state = dict(step=jnp.zeros((), jnp.int32), tokens=jnp.zeros((steps,), jnp.int32),
               stopped=jnp.zeros((), jnp.bool_), logits=logits, cache=cache, rng=rng)

  def still_running(state):
    return (state['step'] < steps) & ~state['stopped']

  def step(state):
    rng, sample_rng = jax.random.split(state['rng'])
    token = decoding.sample_tokens(sample_rng, state['logits'][None], sampling)  # [1]
    cache = state['cache']
    logits, cache = model.apply({'params': params}, token[None], cache.length[None, None],
                                jnp.ones((1, 1), jnp.int32), cache=cache)
    return dict(step=state['step'] + 1, tokens=state['tokens'].at[state['step']].set(token[0]),
                stopped=jnp.isin(token[0], stop_ids), logits=logits[0, 0], cache=cache, rng=rng)

  state = jax.lax.while_loop(still_running, step, state)
  return state['tokens'], state['step'], state['cache']


def _chunk_size(count: int) -> int:
  return max(MIN_CHUNK, 1 << (count - 1).bit_length())


class Continuation:
  """One growing prompt of a run's model (batch of one) and its cache.

  `window`: the most tokens a prompt plus its line may span (the trained
  length); a longer prompt keeps its newest tokens and runs them afresh
  (`window_cuts` counts it). A line that reaches `max_new_tokens` before a
  stop token is cut there (`line_cuts` counts it). Call inside `run.activated()`.
  """

  def __init__(self, run, sampling: decoding.Sampling, stop_ids, window: int, seed: int = 0):
    if sampling.num_candidates != 1:
      raise ValueError('a continuation decodes one line at a time (num_candidates=1)')
    self.run, self.sampling, self.window = run, sampling, window
    self.stop_ids = jnp.asarray(sorted(stop_ids), jnp.int32)
    self.rng = jax.random.key(seed)
    self.room = window - 1 - sampling.max_new_tokens  # the leading 0, the line
    if self.room < 1:
      raise ValueError(f'lines of {sampling.max_new_tokens} tokens leave no room for a prompt '
                       f'in a window of {window}')
    # The window, plus the padding of the largest chunk that can start at its end.
    self.most_slots = window + _chunk_size(window)
    self.cache = KVCache.empty(run.model.config, 1, min(MIN_CHUNK, self.most_slots))
    self.held = []  # the tokens the cache holds
    self.tokens_run = self.window_cuts = self.line_cuts = self.lines = 0

  def line(self, ids: list[int]) -> list[int]:
    """The tokens the model writes after the prompt `ids`, up to and
    including the stop token that ends them (absent when the line was cut at
    max_new_tokens)."""
    if len(ids) > self.room:
      ids = ids[len(ids) - self.room:]
      self.window_cuts += 1
    prompt = [0] + list(ids)  # every training segment starts with 0
    common = 0
    for held, wanted in zip(self.held, prompt[:-1]):  # the last prompt token always runs
      if held != wanted:
        break
      common += 1
    new = prompt[common:]
    self.cache = self.cache.replace(length=jnp.asarray(common, jnp.int32))
    chunk = np.zeros((1, _chunk_size(len(new))), np.int32)
    chunk[0, :len(new)] = new
    # Room for the padded chunk and for the longest line after the prompt:
    # a write past the last slot would land on it (XLA clamps the index).
    needed = common + max(chunk.shape[1], len(new) + self.sampling.max_new_tokens)
    if needed > self.cache.positions.shape[1]:
      self.cache = self.cache.with_slots(min(_chunk_size(needed), self.most_slots))
    params, model = self.run.params, self.run.model
    logits, self.cache = extend(params, self.cache, jnp.asarray(chunk), len(new), model=model)
    rng = jax.random.fold_in(self.rng, self.lines)
    tokens, count, self.cache = decode_line(params, self.cache, logits, self.stop_ids, rng,
                                            model=model, sampling=self.sampling)
    written = np.asarray(tokens)[:int(count)].tolist()
    self.line_cuts += not written or written[-1] not in self.stop_ids
    self.held = prompt + written
    self.tokens_run += len(new) + len(written)
    self.lines += 1
    return written
