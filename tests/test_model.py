"""The whole decoder: numpy reference, causality, packing, scan/remat equivalence."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamda_jax.config import ModelConfig
from lamda_jax.model import layers
from lamda_jax.model.decoder import Decoder
from tests import numpy_reference

CFG = ModelConfig(num_layers=3, d_model=32, num_heads=4, head_dim=8, d_ff=48, vocab_size=97,
                  dtype='float32', relative_attention_num_buckets=8,
                  relative_attention_max_distance=12)


def _variant(**changes):
  return dataclasses.replace(CFG, **changes)


def _tokens(shape, seed=0):
  return jax.random.randint(jax.random.key(seed), shape, 3, CFG.vocab_size)


def _init(cfg, tokens):
  return jax.jit(Decoder(cfg).init)(jax.random.key(42), tokens)['params']


@functools.cache
def _jitted_apply(cfg):
  return jax.jit(Decoder(cfg).apply, static_argnames='deterministic')


def _apply(cfg, params, *inputs, **kwargs):
  return _jitted_apply(cfg)({'params': params}, *inputs, **kwargs)


@pytest.mark.parametrize('changes', [
    {}, {'scan_layers': False}, {'activations': ('silu', 'linear')}, {'tie_embeddings': True},
    {'remat_policy': 'full'}, {'head_dim': 16, 'num_heads': 3},
    {'position_encoding': 'rope'}, {'num_kv_heads': 2}, {'num_kv_heads': 1, 'scan_layers': False},
    {'num_kv_heads': 2, 'position_encoding': 'rope', 'rope_max_wavelength': 100},
    {'causal_blocks': 3}, {'causal_blocks': 32, 'scan_layers': False},
    {'causal_blocks': 4, 'position_encoding': 'rope', 'num_kv_heads': 2},
], ids=str)
def test_matches_numpy_reference(changes):
  cfg = _variant(**changes)
  tokens = _tokens((2, 20))  # longer than max_distance: exercises the log buckets
  positions = np.tile(np.arange(20), (2, 1))
  segment_ids = np.ones((2, 20), np.int32)
  params = _init(cfg, tokens)
  logits = _apply(cfg, params, tokens)
  want = numpy_reference.decoder(jax.tree.map(lambda x: np.asarray(x, np.float64), nn.unbox(params)),
                                 cfg, np.asarray(tokens), positions, segment_ids)
  np.testing.assert_allclose(logits, want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize('tie_embeddings', [False, True])
def test_logits_of_chosen_vocab_ids_match_the_numpy_reference(tie_embeddings):
  cfg = _variant(tie_embeddings=tie_embeddings)
  tokens = _tokens((2, 6))
  params = _init(cfg, tokens)
  vocab_ids = jnp.asarray([4, 90, 4, 17])  # any order, repeats allowed
  logits = _apply(cfg, params, tokens, vocab_ids=vocab_ids)
  want = numpy_reference.decoder(jax.tree.map(lambda x: np.asarray(x, np.float64), nn.unbox(params)),
                                 cfg, np.asarray(tokens), np.tile(np.arange(6), (2, 1)),
                                 np.ones((2, 6), np.int32))
  assert logits.shape == (2, 6, 4)
  np.testing.assert_allclose(logits, want[..., [4, 90, 4, 17]], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize('changes', [{}, {'position_encoding': 'rope', 'num_kv_heads': 2},
                                     {'causal_blocks': 5}], ids=str)
def test_numpy_reference_on_packed_and_padded_rows(changes):
  cfg = _variant(**changes)
  tokens = _tokens((2, 12))
  segment_ids = np.array([[1] * 5 + [2] * 7, [1] * 9 + [0] * 3])
  positions = np.array([list(range(5)) + list(range(7)), list(range(9)) + [0] * 3])
  params = _init(cfg, tokens)
  logits = np.asarray(_apply(cfg, params, tokens, positions, segment_ids))
  want = numpy_reference.decoder(jax.tree.map(lambda x: np.asarray(x, np.float64), nn.unbox(params)),
                                 cfg, np.asarray(tokens), positions, segment_ids)
  real = segment_ids != 0
  np.testing.assert_allclose(logits[real], want[real], rtol=2e-4, atol=2e-4)
  assert np.isfinite(logits).all()  # padding rows stay finite


def test_causal_changing_a_token_never_changes_earlier_logits():
  tokens = _tokens((1, 16))
  params = _init(CFG, tokens)
  base = np.asarray(_apply(CFG, params, tokens))
  for t in (0, 5, 15):
    changed = tokens.at[0, t].set((tokens[0, t] + 1) % CFG.vocab_size)
    out = np.asarray(_apply(CFG, params, changed))
    np.testing.assert_array_equal(out[0, :t], base[0, :t])
    assert not np.allclose(out[0, t:], base[0, t:])  # the change is visible from t on


def test_packed_segments_equal_each_segment_alone():
  first, second = _tokens((1, 5), seed=1), _tokens((1, 7), seed=2)
  packed = jnp.concatenate([first, second, jnp.zeros((1, 4), jnp.int32)], axis=1)
  segment_ids = jnp.array([[1] * 5 + [2] * 7 + [0] * 4])
  positions = jnp.array([list(range(5)) + list(range(7)) + [0] * 4])
  params = _init(CFG, packed)
  out = _apply(CFG, params, packed, positions, segment_ids)
  alone_first = _apply(CFG, params, first)
  alone_second = _apply(CFG, params, second)
  np.testing.assert_allclose(out[:, :5], alone_first, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out[:, 5:12], alone_second, rtol=1e-5, atol=1e-5)


def _unstack(scanned_params, num_layers):
  layers = scanned_params['layers']
  unrolled = {k: v for k, v in scanned_params.items() if k != 'layers'}
  for i in range(num_layers):
    unrolled[f'layers_{i}'] = jax.tree.map(lambda x, i=i: x[i], layers)
  return unrolled


def test_scanned_and_unrolled_layers_compute_the_same_function():
  tokens = _tokens((2, 10))
  scanned = nn.unbox(_init(CFG, tokens))
  unrolled_cfg = _variant(scan_layers=False)
  out_scanned = _apply(CFG, scanned, tokens)
  out_unrolled = _apply(unrolled_cfg, _unstack(scanned, CFG.num_layers), tokens)
  np.testing.assert_allclose(out_scanned, out_unrolled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('policy', ['full', 'dots', 'dots_no_batch'])
def test_remat_policies_keep_gradients(policy):
  tokens = _tokens((2, 10))
  params = nn.unbox(_init(CFG, tokens))

  def loss(p, cfg):
    return jnp.mean(Decoder(cfg).apply({'params': p}, tokens) ** 2)

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  want = grad(params, CFG)
  got = grad(params, _variant(remat_policy=policy))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)


@pytest.mark.parametrize('changes', [{'causal_blocks': 3},
                                     {'causal_blocks': 4, 'position_encoding': 'rope'}], ids=str)
def test_causal_blocks_keep_gradients(changes):
  """Blocked attention's gradients are the whole square's: the blocks it skips
  are masked, so they contribute nothing."""
  tokens = _tokens((2, 11))
  params = nn.unbox(_init(CFG, tokens))

  def loss(p, cfg):
    return jnp.mean(Decoder(cfg).apply({'params': p}, tokens) ** 2)

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  want = grad(params, _variant(**dict(changes, causal_blocks=1)))
  got = grad(params, _variant(**changes))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)


def test_causal_blocks_cover_the_positions_once():
  assert layers.causal_blocks(10, 3) == [(0, 3), (3, 6), (6, 10)]
  assert layers.causal_blocks(2, 4) == [(0, 1), (1, 2)]  # no empty blocks
  assert layers.causal_blocks(7, 1) == [(0, 7)]


@pytest.mark.parametrize('policy,kept', [('full', 0), ('dots', 2), ('dots_no_batch', 2)])
def test_dot_remat_policies_keep_the_projection_outputs(policy, kept, capsys):
  """The MLP's two [batch, length, d_ff] input projections per layer are saved
  for the backward pass under the dot policies, recomputed under 'full'."""
  cfg = _variant(remat_policy=policy, scan_layers=False)
  tokens = _tokens((2, 8))
  params = nn.unbox(_init(cfg, tokens))
  jax.ad_checkpoint.print_saved_residuals(
      lambda p: jnp.sum(Decoder(cfg).apply({'params': p}, tokens)), params)
  saved = capsys.readouterr().out.splitlines()
  mlp_inputs = [line for line in saved if line.startswith(f'f32[2,8,{cfg.d_ff}]')]
  assert len(mlp_inputs) == kept * cfg.num_layers, saved


def test_dropout_only_in_training_mode():
  cfg = _variant(dropout_rate=0.5)
  tokens = _tokens((1, 8))
  params = _init(cfg, tokens)
  eval_out = _apply(cfg, params, tokens)
  np.testing.assert_array_equal(eval_out, _apply(CFG, params, tokens))
  def train(seed):
    return _apply(cfg, params, tokens, deterministic=False, rngs={'dropout': jax.random.key(seed)})

  assert not np.allclose(train(0), eval_out)
  assert not np.allclose(train(0), train(1))
  np.testing.assert_array_equal(train(0), train(0))


def test_bfloat16_compute_tracks_float32():
  tokens = _tokens((2, 12))
  params = _init(CFG, tokens)
  bf16 = _apply(_variant(dtype='bfloat16'), params, tokens)
  f32 = _apply(CFG, params, tokens)
  assert bf16.dtype == jnp.float32  # logits are always float32 for the loss
  assert jax.tree.leaves(params)[0].dtype == jnp.float32
  # bf16 keeps 8 significant bits (relative step 2^-8 = 0.004); through three
  # layers the worst logit moved 0.036-0.050 standard deviations over eight
  # seeds, so 0.08 leaves room for other seeds but not for a wrong cast.
  np.testing.assert_allclose(bf16, f32, atol=0.08 * float(jnp.std(f32)))


def test_every_parameter_has_logical_axes():
  params = _init(CFG, _tokens((1, 4)))
  boxed = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert boxed and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in boxed)
  specs = nn.get_partition_spec(params)
  assert specs['layers']['attention']['query'] == jax.sharding.PartitionSpec(
      'layers', 'embed', 'heads', 'kv')
  assert specs['layers']['mlp']['wo'] == jax.sharding.PartitionSpec('layers', 'mlp', 'embed')
  assert specs['token_embedder']['embedding'] == jax.sharding.PartitionSpec('vocab', 'embed')
  assert specs['layers']['attention']['key'] == jax.sharding.PartitionSpec(
      'layers', 'embed', 'kv_heads', 'kv')
  assert specs['relpos_bias']['rel_embedding'] == jax.sharding.PartitionSpec('heads',
                                                                             'relpos_buckets')


def test_rope_dot_products_depend_only_on_the_distance():
  """RoPE's defining property: <rope(q, m), rope(k, n)> is a function of m - n."""
  q, k = (jax.random.normal(jax.random.key(seed), (1, 1, 1, 16)) for seed in (1, 2))
  def score(m, n):
    turned_q = layers.rotary_embedding(q, jnp.full((1, 1), m), 10_000)
    turned_k = layers.rotary_embedding(k, jnp.full((1, 1), n), 10_000)
    return float(jnp.sum(turned_q * turned_k))
  assert score(7, 3) == pytest.approx(score(104, 100), rel=1e-4)
  assert score(3, 3) == pytest.approx(float(jnp.sum(q * k)), rel=1e-5)  # distance 0: unturned
  assert score(7, 3) != pytest.approx(score(8, 3), rel=1e-3)


def test_query_initialisation_absorbs_attention_scaling():
  cfg = _variant(d_model=256, head_dim=64, num_heads=4)
  params = nn.unbox(_init(cfg, _tokens((1, 2))))['layers']['attention']
  # fan-in d_model for both; the query is further scaled by 1/sqrt(head_dim).
  ratio = float(jnp.std(params['key']) / jnp.std(params['query']))
  assert ratio == pytest.approx(np.sqrt(64), rel=0.05)
  assert float(jnp.std(params['key'])) == pytest.approx(1 / np.sqrt(256), rel=0.1)
