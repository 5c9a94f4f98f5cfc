"""Sampling with the KV cache, checked against full forward passes."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamda_jax.config import ModelConfig
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.model import kv_cache
from lamda_jax.model.decoder import Decoder
from lamda_jax.serving import decoding, runs, scoring
from lamda_jax.training import partitioning
from lamda_jax.training import trainer as trainer_lib
from lamda_jax.training.checkpointing import Checkpointer
from tests import training_helpers

CFG = ModelConfig(num_layers=2, d_model=32, num_heads=4, head_dim=8, d_ff=48, vocab_size=61,
                  dtype='float32', relative_attention_num_buckets=8,
                  relative_attention_max_distance=12)
GREEDY = decoding.Sampling(num_candidates=2, max_new_tokens=10, top_k=40, temperature=0.0,
                           top_p=1.0)
PROMPTS = [[5, 9, 17, 4, 30, 22, 8], [11, 3, 40]]  # ragged: padded on the right


def _model_and_params(cfg=CFG):
  model = Decoder(cfg)
  return model, nn.unbox(jax.jit(model.init)(jax.random.key(3), jnp.zeros((1, 8), jnp.int32))[
      'params'])


@functools.partial(jax.jit, static_argnames='model')
def _padded_apply(params, inputs, segment_ids, model):
  return model.apply({'params': params}, inputs, None, segment_ids)


def _full_logits(model, params, inputs, padded_length=40):
  """The last position's logits of an unpadded full pass (padding on the right
  is invisible to earlier positions, so one compilation serves all lengths)."""
  padded = np.zeros((1, padded_length), np.int32)
  padded[0, :len(inputs)] = inputs
  segment_ids = (np.arange(padded_length) < len(inputs)).astype(np.int32)[None]
  return np.asarray(_padded_apply(params, padded, segment_ids, model))[0, len(inputs) - 1]


def _greedy_by_full_passes(model, params, prompt, steps):
  """The reference: re-run the whole sequence for every new token."""
  inputs, tokens, log_likelihood = [0] + prompt, [], 0.0
  for _ in range(steps):
    logits = _full_logits(model, params, inputs)
    token = int(np.argmax(logits))
    log_likelihood += float(jax.nn.log_softmax(logits)[token])
    tokens.append(token)
    if token == tokenizer_lib.EOS_ID:
      break
    inputs.append(token)
  return tokens, log_likelihood


def _generate(model, params, sampling, seed=0, prompts=PROMPTS):
  inputs, lengths = kv_cache.pad_prompts(prompts)
  keys = jax.random.split(jax.random.key(seed), len(prompts))
  return decoding.generate(params, jnp.asarray(inputs), jnp.asarray(lengths), keys, model=model,
                           sampling=sampling)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_greedy_decoding_equals_full_forward_passes(scan_layers):
  model, params = _model_and_params(dataclasses.replace(CFG, scan_layers=scan_layers))
  out = _generate(model, params, GREEDY)
  for row, prompt in enumerate(PROMPTS):
    want, log_likelihood = _greedy_by_full_passes(model, params, prompt, GREEDY.max_new_tokens)
    for candidate in range(GREEDY.num_candidates):  # greedy candidates all agree
      got = list(np.asarray(out['tokens'][row, candidate]))
      assert got[:len(want)] == want
      assert not any(got[len(want):])
      np.testing.assert_allclose(out['log_likelihood'][row, candidate], log_likelihood,
                                 rtol=1e-4)


def test_decoding_stops_at_the_end_of_response():
  model, params = _model_and_params()
  # Layers that add nothing, embeddings positive along dimension 0, and an
  # output layer reading only that dimension into EOS: EOS always wins.
  params = jax.tree.map(np.array, params)
  for i in range(CFG.num_layers):
    params['layers']['attention']['out'][i] = 0
    params['layers']['mlp']['wo'][i] = 0
  params['token_embedder']['embedding'][:, 0] = 10.0
  params['logits_dense'][...] = 0
  params['logits_dense'][0, tokenizer_lib.EOS_ID] = 1.0
  out = _generate(model, params, GREEDY)
  assert np.all(out['finished'])
  # The loop stopped after the first step: one slot written after the prompts,
  # which the candidates share.
  assert int(out['cache'].length) == 1
  assert int(out['cache'].prefix.length) == max(map(len, PROMPTS)) + 1
  assert not np.any(out['lengths'])
  assert not np.any(out['tokens'][..., 1:])
  assert np.all(out['tokens'][..., 0] == tokenizer_lib.EOS_ID)


def test_sampling_is_reproducible_from_the_seed():
  model, params = _model_and_params()
  sampling = dataclasses.replace(GREEDY, temperature=1.0, num_candidates=4)
  first, again = _generate(model, params, sampling, 7), _generate(model, params, sampling, 7)
  np.testing.assert_array_equal(first['tokens'], again['tokens'])
  other = _generate(model, params, sampling, 8)
  assert not np.array_equal(first['tokens'], other['tokens'])
  # Candidates of one prompt differ from each other.
  assert len({tuple(t) for t in np.asarray(first['tokens'][0])}) > 1
  # A prompt's candidates come from its own key: another prompt beside it
  # (same batch shape) changes none of them.
  keys = jax.random.split(jax.random.key(7), 2)
  def sampled(second_prompt, second_key):
    inputs, lengths = kv_cache.pad_prompts([PROMPTS[0], second_prompt], width=8)
    return decoding.generate(params, jnp.asarray(inputs), jnp.asarray(lengths),
                             jnp.stack([keys[0], second_key]), model=model, sampling=sampling)
  one, two = sampled(PROMPTS[1], keys[1]), sampled([9, 8, 7], jax.random.key(99))
  for field in ('tokens', 'log_likelihood', 'lengths'):
    np.testing.assert_array_equal(one[field][0], two[field][0])
  assert not np.array_equal(one['tokens'][1], two['tokens'][1])


def test_top_k_never_samples_outside_the_top_k():
  logits = jax.random.normal(jax.random.key(0), (3, 50)) * 3
  top5 = np.argsort(-np.asarray(logits), axis=-1)[:, :5]
  sampling = dataclasses.replace(GREEDY, temperature=1.5, top_k=5)
  seen = [set() for _ in range(3)]
  for seed in range(300):
    tokens = np.asarray(decoding.sample_tokens(jax.random.key(seed), logits, sampling))
    for row, token in enumerate(tokens):
      assert token in top5[row]
      seen[row].add(int(token))
  assert all(len(s) > 1 for s in seen)  # it samples, rather than always taking the best


def test_top_p_keeps_exactly_the_nucleus():
  # Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps the first two (0.5 < 0.75 <= 0.8).
  logits = jnp.log(jnp.asarray([[0.05, 0.5, 0.15, 0.3]]))
  sampling = dataclasses.replace(GREEDY, temperature=1.0, top_k=0, top_p=0.75)
  drawn = {int(decoding.sample_tokens(jax.random.key(s), logits, sampling)[0]) for s in range(200)}
  assert drawn == {1, 3}


def test_greedy_is_the_argmax():
  logits = jax.random.normal(jax.random.key(1), (4, 30))
  np.testing.assert_array_equal(decoding.sample_tokens(jax.random.key(0), logits, GREEDY),
                                np.argmax(logits, axis=-1))


@pytest.mark.parametrize('suffixes', [((7, 12), (7, 13, 14), (20,)),
                                      ((7, 9, 12), (7, 9, 13, 14), (7, 20))])  # 0 / 1 shared
def test_scores_from_the_decoding_cache_equal_full_passes(suffixes):
  """The cache decoding leaves holds <prompt> <response> per candidate: suffixes
  scored against it equal a full pass over prompt + response + suffix, and the
  cache handed back scores the same again."""
  model, params = _model_and_params()
  sampling = dataclasses.replace(GREEDY, temperature=1.0, num_candidates=3)
  out = _generate(model, params, sampling, seed=3)
  finished = np.asarray(out['finished'])
  assert finished.any() and not finished.all()  # seed 3 ends three candidates early
  for row, candidate in zip(*np.nonzero(finished)):  # the response stops just before EOS
    length = int(out['lengths'][row, candidate])
    assert out['tokens'][row, candidate, length] == tokenizer_lib.EOS_ID
    assert tokenizer_lib.EOS_ID not in list(np.asarray(out['tokens'][row, candidate, :length]))
  zero_id, one_id = 4, 6
  def score(cache):
    return scoring.score_cached(params, cache, out['next_positions'], zero_id, one_id,
                                model=model, suffixes=suffixes)

  got, cache = score(out['cache'])
  again, _ = score(cache)
  np.testing.assert_allclose(again, got, rtol=1e-6)
  for row in range(len(PROMPTS) * sampling.num_candidates):
    prompt, candidate = PROMPTS[row // 3], row % 3
    response = list(np.asarray(out['tokens'][row // 3, candidate]))
    response = response[:int(out['lengths'][row // 3, candidate])]
    for a, suffix in enumerate(suffixes):
      logits = _full_logits(model, params, [0] + prompt + response + list(suffix))
      want = jax.nn.softmax(jnp.asarray([logits[zero_id], logits[one_id]]))[1]
      np.testing.assert_allclose(got[row, a], want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('mesh', [(2, 2, 2), (1, 1, 8), (8, 1, 1)])
def test_sharded_decoding_equals_one_device(mesh):
  tokens = {}
  for shape, devices in ((mesh, jax.devices()), ((1, 1, 1), jax.devices()[:1])):
    trainer = trainer_lib.set_up(training_helpers.experiment(mesh=shape), devices)
    model = trainer.model
    with trainer.activated():
      params = trainer.initial_state().params
      sampling = dataclasses.replace(GREEDY, num_candidates=4)
      out = _generate(model, params, sampling, prompts=[[5, 9, 17], [11, 3, 40, 2, 7]])
      tokens[shape] = (np.asarray(out['tokens']), np.asarray(out['log_likelihood']))
  np.testing.assert_array_equal(tokens[mesh][0], tokens[(1, 1, 1)][0])
  np.testing.assert_allclose(tokens[mesh][1], tokens[(1, 1, 1)][1], rtol=1e-4)


@pytest.mark.parametrize('tie_embeddings', [False, True])
def test_inference_params_decode_and_score_exactly_like_the_stored_ones(tie_embeddings):
  """bf16 compute from f32 parameters: casting them once gives bit-identical
  samples, log-likelihoods and scores, at half the memory of every kernel."""
  cfg = dataclasses.replace(CFG, dtype='bfloat16', tie_embeddings=tie_embeddings)
  model, params = _model_and_params(cfg)
  cast = decoding.inference_params(params, cfg)
  table = cast.pop('token_embedder')['embedding']  # gathered only, unless it is also the output
  assert table.dtype == (jnp.bfloat16 if tie_embeddings else jnp.float32)
  assert {x.dtype for x in jax.tree.leaves(cast)} == {jnp.dtype(jnp.bfloat16)}
  cast = decoding.inference_params(params, cfg)
  sampling = dataclasses.replace(GREEDY, temperature=1.0, num_candidates=3)
  results = []
  for weights in (params, cast):
    out = _generate(model, weights, sampling, seed=5)
    scores, _ = scoring.score_cached(weights, out['cache'], out['next_positions'], 4, 6,
                                     model=model, suffixes=((7, 12), (7, 13)))
    results.append([np.asarray(out['tokens']), np.asarray(out['log_likelihood']),
                    np.asarray(scores)])
  for stored, once in zip(*results):
    np.testing.assert_array_equal(once, stored)


def test_reading_a_run_reads_only_the_parameters_in_inference_dtypes(tmp_path):
  """Serving reads a run's weights straight into bf16 kernels and never its
  optimizer state: a reader configured with another optimizer still loads."""
  trained = training_helpers.experiment(mesh=(-1, 1, 1), model={'dtype': 'bfloat16'})  # AdamW
  trainer = trainer_lib.set_up(trained)
  with trainer.activated():
    state = trainer.initial_state()
    checkpointer = Checkpointer(str(tmp_path), trained.train)
    checkpointer.save(7, state, {})
    checkpointer.close()
  reader = dataclasses.replace(trained, train=dataclasses.replace(trained.train,
                                                                  optimizer='adafactor'))
  mesh = partitioning.create_mesh(reader)
  params = runs.read_params(reader, str(tmp_path), 'decode.from_run', mesh)
  want = decoding.inference_params(jax.device_get(state.params), trained.model)
  assert jax.tree.structure(params) == jax.tree.structure(want)
  for got, expected in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
  with pytest.raises(FileNotFoundError, match='config.decode.from_run: no readable checkpoint'):
    runs.read_params(reader, str(tmp_path / 'empty'), 'decode.from_run', mesh)
