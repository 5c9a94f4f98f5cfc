"""Sampling candidate responses with the KV cache, in one jitted call.

A batch of prompts is run once into a cache; each prompt's cache is then the
shared prefix of its N candidates' caches (read in place, held once), and they
advance one token per step of a
`lax.while_loop` until all of them have ended (EOS) or `max_new_tokens`.
Shapes are static, so one compilation serves every request of a size.

Prompts are model inputs: a leading 0 (the start of every training segment)
then the `<context> RESPONSE` tokens, right-padded. Padding, and every slot a
candidate writes after its end, carries segment id 0, so the cache left
behind holds exactly `<prompt> <response>` per candidate — ready for the
discriminators' attribute suffixes (`scoring.score_cached`).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from lamda_jax.config import DecodeConfig, ModelConfig
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.model import kv_cache
from lamda_jax.serving import scoring


def inference_params(params, cfg: ModelConfig):
  """Parameters to decode and score with: the matmul weights cast to the
  compute dtype once, instead of at every step and scoring pass. The model
  casts them to exactly that dtype, so its outputs do not change; in bf16 the
  weights take half the memory, as a serving copy should.

  An untied token table keeps its stored dtype: it is only gathered from, and
  XLA:CPU gathers from a bf16 table by converting all of it to f32 first.
  """
  cast = jax.tree.map(lambda x: x.astype(cfg.dtype), params)
  if cfg.tie_embeddings:
    return cast
  return {**cast, 'token_embedder': params['token_embedder']}


@dataclasses.dataclass(frozen=True)
class Sampling:
  """The static part of a decode: changing any of these recompiles."""
  num_candidates: int
  max_new_tokens: int
  top_k: int
  temperature: float
  top_p: float

  @classmethod
  def from_config(cls, cfg: DecodeConfig) -> 'Sampling':
    return cls(cfg.num_candidates, cfg.max_new_tokens, cfg.top_k, float(cfg.temperature),
               float(cfg.top_p))


def sample_tokens(rng, logits, sampling: Sampling):
  """One token per row of logits [batch, vocab]: greedy at temperature 0,
  otherwise from the top-k (0 = all) and top-p nucleus at that temperature."""
  if sampling.temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / sampling.temperature
  vocab = logits.shape[-1]
  top_k = min(sampling.top_k or vocab, vocab)
  if top_k == vocab and sampling.top_p == 1:
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)
  values, indices = jax.lax.top_k(logits, top_k)  # [batch, k], best first
  if sampling.top_p < 1:
    probabilities = jax.nn.softmax(values, axis=-1)
    before = jnp.cumsum(probabilities, axis=-1) - probabilities
    values = jnp.where(before < sampling.top_p, values, -jnp.inf)  # the best always stays
  choice = jax.random.categorical(rng, values, axis=-1)
  return jnp.take_along_axis(indices, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('model', 'sampling'))
def generate(params, prompts, prompt_lengths, rngs, *, model, sampling: Sampling):
  """prompts [batch, length] (right-padded), prompt_lengths [batch], one key
  per prompt rngs [batch] ->

  tokens [batch, N, max_new] (0 after the end), lengths [batch, N] (tokens
  before EOS), finished [batch, N], log_likelihood [batch, N] (sum of log p of
  the response and its EOS under the unmodified model), and the cache of
  `<prompt> <response>` per candidate (rows batch-major: prompt i's
  candidates are rows i*N .. i*N+N-1, reading prompt i from `cache.prefix`)
  with `next_positions` [batch * N].

  Candidate c of prompt i draws its tokens from its own key (split from
  rngs[i], folded with the step), so a prompt's candidates do not depend on
  the other prompts of the batch: batching requests together changes no
  answer (serving/server.py's Batcher).
  """
  batch, length = prompts.shape
  candidates, steps = sampling.num_candidates, sampling.max_new_tokens
  def apply(tokens, positions, segments, cache):
    return model.apply({'params': params}, tokens, positions, segments, cache=cache)

  logits, prompt_cache = kv_cache.prefill(model, params, prompts, prompt_lengths, length)
  last = jnp.take_along_axis(logits, (prompt_lengths - 1)[:, None, None], axis=1)[:, 0]

  rows = batch * candidates
  state = dict(
      # Each prompt's cache is the shared prefix of its candidates' own slots;
      # spare slots after the longest response hold the attribute suffixes scoring appends.
      step=jnp.zeros((), jnp.int32),
      cache=prompt_cache.shared_by(candidates, steps + scoring.SUFFIX_SLOTS),
      logits=jnp.repeat(last, candidates, axis=0),  # [rows, vocab]
      next_positions=jnp.repeat(prompt_lengths, candidates).astype(jnp.int32),
      tokens=jnp.zeros((rows, steps), jnp.int32), lengths=jnp.zeros((rows,), jnp.int32),
      finished=jnp.zeros((rows,), jnp.bool_), log_likelihood=jnp.zeros((rows,), jnp.float32))
  row_keys = jax.vmap(lambda key: jax.random.split(key, candidates))(rngs).reshape(rows)
  def sample(key, logits):  # one row: [vocab] -> its token
    return sample_tokens(key, logits[None], sampling)[0]

  def still_running(state):
    return (state['step'] < steps) & ~jnp.all(state['finished'])

  def step(state):
    running = ~state['finished']
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys, state['step'])
    token = jnp.where(running, jax.vmap(sample)(keys, state['logits']), 0)
    log_p = jnp.take_along_axis(jax.nn.log_softmax(state['logits']), token[:, None], axis=-1)[:, 0]
    ended = token == tokenizer_lib.EOS_ID
    # Response tokens join the cache in the response's segment; EOS and what
    # follows it are padding, so the cache holds exactly <prompt> <response>.
    keep = running & ~ended
    logits, cache = apply(token[:, None], state['next_positions'][:, None],
                          keep.astype(jnp.int32)[:, None], state['cache'])
    return dict(
        step=state['step'] + 1, cache=cache, logits=logits[:, 0],
        next_positions=state['next_positions'] + keep,
        tokens=state['tokens'].at[:, state['step']].set(token),
        lengths=state['lengths'] + keep, finished=state['finished'] | ended,
        log_likelihood=state['log_likelihood'] + jnp.where(running, log_p, 0.0))

  state = jax.lax.while_loop(still_running, step, state)
  def per_prompt(x):
    return x.reshape(batch, candidates, *x.shape[1:])

  return dict(tokens=per_prompt(state['tokens']), lengths=per_prompt(state['lengths']),
              finished=per_prompt(state['finished']),
              log_likelihood=per_prompt(state['log_likelihood']), cache=state['cache'],
              next_positions=state['next_positions'])
