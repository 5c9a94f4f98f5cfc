"""Discriminator scores read from the same model (§6.1).

A score is P(rating = 1 | <context> RESPONSE <response> <ATTRIBUTE>): the
softmax over just the two rating tokens '0' and '1' at the rating position,
or, for a model with discriminator heads, the sigmoid of the attribute's head
at that same position.
The shared `<context> RESPONSE <response>` prefix runs once into a KV cache;
each attribute then costs only its few suffix tokens against that cache —
the reason the paper gives for discriminator scoring being cheap. Sampled
candidates are scored straight from the cache their decoding left behind.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax.attributes import NAMES
from lamda_jax.finetune import formats
from lamda_jax.model import kv_cache
from lamda_jax.model.kv_cache import KVCache

SUFFIX_SLOTS = 8  # cache slots kept after a prefix (or a response) for an attribute suffix


def rating_suffixes(tokenizer, attributes) -> tuple[tuple[int, ...], ...]:
  """Per attribute, the model inputs after the prefix whose last one predicts the rating:
  the tokens of `<ATTRIBUTE> <rating>` without the rating."""
  suffixes = tuple(tuple(formats.rating_suffix(tokenizer, attribute, 1)[:-1])
                   for attribute in attributes)
  if max(map(len, suffixes)) > SUFFIX_SLOTS:
    raise ValueError(f'attribute suffixes of {max(map(len, suffixes))} tokens exceed the '
                     f'{SUFFIX_SLOTS} cache slots kept for them')
  return suffixes


@functools.partial(jax.jit, static_argnames=('model', 'suffixes', 'heads'),
                   donate_argnames='cache')
def score_cached(params, cache: KVCache, next_positions, zero_id, one_id, *, model,
                 suffixes: tuple[tuple[int, ...], ...], heads: tuple[int, ...] = ()):
  """(P(rating = 1) [rows, attributes], the cache) for the prefixes held in
  `cache` (one per row; the next token of row r sits at next_positions[r]).
  A model with discriminator heads reads suffix i with head `heads[i]`
  (default: head i); the rating ids are then unused.

  Leading tokens all suffixes share run once; then the attributes take turns
  in the same slots, each rest of a suffix (right-padded to the longest)
  overwriting the last. The cache is donated and handed back with its
  prefixes intact (slots past `length` are never visible), so it is neither
  copied nor grown: the added cost is a few tokens per attribute.
  """
  rows = next_positions.shape[0]
  by_heads = model.attribute_heads > 0
  rating_ids = jnp.stack([zero_id, one_id])  # only their logits are computed
  def apply(tokens, positions, segments, cache):
    return model.apply({'params': params}, jnp.broadcast_to(tokens, (rows, tokens.shape[-1])),
                       positions, jnp.broadcast_to(segments, (rows, tokens.shape[-1])),
                       cache=cache, vocab_ids=None if by_heads else rating_ids,
                       readout='heads' if by_heads else 'vocab')

  # Leading tokens every suffix shares (e.g. the space before the attribute
  # word) run once for all attributes.
  shared = 0
  while shared < min(map(len, suffixes)) - 1 and len({s[shared] for s in suffixes}) == 1:
    shared += 1
  if shared:
    common = jnp.asarray(suffixes[0][:shared], jnp.int32)
    _, cache = apply(common, next_positions[:, None] + jnp.arange(shared)[None, :],
                     jnp.ones((shared,), jnp.int32), cache)
    next_positions = next_positions + shared
    suffixes = tuple(suffix[shared:] for suffix in suffixes)

  width = max(map(len, suffixes))
  tokens = np.zeros((len(suffixes), width), np.int32)
  segments = np.zeros((len(suffixes), width), np.int32)
  for a, suffix in enumerate(suffixes):
    tokens[a, :len(suffix)], segments[a, :len(suffix)] = suffix, 1
  rating_at = np.asarray([len(suffix) - 1 for suffix in suffixes], np.int32)
  head = np.asarray(heads or range(len(suffixes)), np.int32)
  positions = next_positions[:, None] + jnp.arange(width)[None, :]  # [rows, width]

  def score_attribute(cache, suffix):
    suffix_tokens, suffix_segments, at, head = suffix
    out, written = apply(suffix_tokens, positions, suffix_segments, cache)
    read = jnp.take(out, at, axis=1)  # [rows, heads], or [rows, 2]: the logits of '0' and '1'
    probability = (jax.nn.sigmoid(jnp.take(read, head, axis=1)) if by_heads else
                   jax.nn.softmax(read, axis=-1)[:, 1])
    return written.replace(length=cache.length), probability

  cache, probability = jax.lax.scan(score_attribute, cache, (tokens, segments, rating_at, head))
  return probability.T, cache.replace(length=cache.length - shared)  # [rows, attributes]


@functools.partial(jax.jit, static_argnames='model')
def _prefill(params, inputs, lengths, *, model):
  """Right-padded prefixes into a cache with room for the attribute suffixes."""
  _, cache = kv_cache.prefill(model, params, inputs, lengths, inputs.shape[1] + SUFFIX_SLOTS,
                              vocab_ids=jnp.zeros((1,), jnp.int32))  # logits unused
  return cache


def fits(tokenizer, context, response: str, seq_len: int) -> bool:
  """Whether a response can be scored: it fits in a row with an attribute
  suffix (every attribute is one control word, so any suffix tells)."""
  try:
    formats.discriminator_example(tokenizer, context, response, NAMES[0], 1, seq_len)
  except formats.TooLong:
    return False
  return True


def score(params, model, tokenizer, contexts, responses, attributes, seq_len: int) -> np.ndarray:
  """P(rating = 1) for every (context, response) x attribute: [len(responses), len(attributes)]."""
  suffixes = rating_suffixes(tokenizer, attributes)
  # Contexts are truncated as the training example of the longest suffix is.
  longest = max(range(len(attributes)), key=lambda a: len(suffixes[a]))
  rows = []
  for context, response in zip(contexts, responses):
    example = formats.discriminator_example(tokenizer, context, response,
                                                    attributes[longest], 1, seq_len)
    rows.append(list(example.tokens[:len(example.tokens) - len(suffixes[longest]) - 1]))
  inputs, lengths = kv_cache.pad_prompts(rows)
  cache = _prefill(params, jnp.asarray(inputs), jnp.asarray(lengths), model=model)
  probability, _ = score_cached(params, cache, jnp.asarray(lengths), tokenizer.piece_to_id('0'),
                                tokenizer.piece_to_id('1'), model=model, suffixes=suffixes,
                                heads=tuple(map(NAMES.index, attributes)))
  return np.asarray(probability)
