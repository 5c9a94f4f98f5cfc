"""Each building block against an independent numpy computation."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamda_jax.config import ModelConfig
from lamda_jax.model import layers
from tests import numpy_reference

CFG = ModelConfig(num_layers=1, d_model=16, num_heads=2, head_dim=4, d_ff=24, vocab_size=50,
                  dtype='float32')


@pytest.mark.parametrize('bidirectional', [False, True])
@pytest.mark.parametrize('num_buckets,max_distance', [(32, 128), (64, 256), (16, 64), (8, 20)])
def test_relative_position_bucket_matches_t5_definition(bidirectional, num_buckets, max_distance):
  relative = np.arange(-4096, 4097)
  got = np.asarray(layers.relative_position_bucket(relative, bidirectional, num_buckets,
                                                   max_distance))
  want = np.array([numpy_reference.bucket(int(r), bidirectional, num_buckets, max_distance)
                   for r in relative])
  np.testing.assert_array_equal(got, want)


def test_relative_position_bucket_hand_worked():
  # Causal, 32 buckets, max distance 128: distances 0..15 exact, then
  # 16 + floor(log(n / 16) / log(8) * 16); 128 and beyond share bucket 31.
  relative = np.array([3, 0, -1, -15, -16, -32, -64, -127, -128, -5000])
  np.testing.assert_array_equal(
      layers.relative_position_bucket(relative, False, 32, 128),
      [0, 0, 1, 15, 16, 21, 26, 31, 31, 31])


def _init_apply(module, *inputs):
  variables = module.init(jax.random.key(1), *inputs)
  params = jax.tree.map(np.asarray, nn.unbox(variables['params']))
  return params, np.asarray(module.apply(variables, *inputs))


@pytest.mark.parametrize('activations', [('gelu', 'linear'), ('silu', 'linear'), ('relu',)])
def test_gated_mlp_matches_numpy(activations):
  cfg = ModelConfig(**{**vars(CFG), 'activations': activations})
  x = jax.random.normal(jax.random.key(0), (2, 5, cfg.d_model))
  params, out = _init_apply(layers.GatedMlp(cfg), x)
  want = numpy_reference.gated_mlp(np.asarray(x, np.float64), params, activations)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_gated_gelu_is_tanh_gelu_times_linear():
  x = jax.random.normal(jax.random.key(0), (1, 3, CFG.d_model))
  params, out = _init_apply(layers.GatedMlp(CFG), x)
  x = np.asarray(x, np.float64)
  hidden = numpy_reference.gelu_tanh(x @ params['wi_0']) * (x @ params['wi_1'])
  np.testing.assert_allclose(out, hidden @ params['wo'], rtol=1e-5, atol=1e-5)


def test_rms_norm_matches_numpy():
  x = 3.0 * jax.random.normal(jax.random.key(0), (2, 4, CFG.d_model)) + 1.0
  params, out = _init_apply(layers.RMSNorm(CFG), x)
  want = numpy_reference.rms_norm(np.asarray(x, np.float64), params['scale'], 1e-6)
  np.testing.assert_allclose(out, want, rtol=1e-5)
  # No mean subtraction: the mean of the input survives normalisation.
  assert abs(out.mean()) > 0.1


def test_relative_position_bias_looks_up_the_bucket_of_each_pair():
  positions = jnp.array([[0, 1, 2, 3, 0, 1]])
  params, out = _init_apply(layers.RelativePositionBias(CFG), positions, positions)
  table = params['rel_embedding']  # [heads, buckets]
  for q in range(6):
    for k in range(6):
      expected_bucket = numpy_reference.bucket(int(positions[0, k] - positions[0, q]), False, 32, 128)
      np.testing.assert_allclose(out[0, :, q, k], table[:, expected_bucket], rtol=1e-6)


@pytest.mark.parametrize('length', [1, 2, 7, 300])  # 300: distances past max_distance
def test_in_row_bias_equals_the_gathered_bias_and_its_gradient_has_no_scatter(length):
  module = layers.RelativePositionBias(CFG)
  positions = jnp.broadcast_to(jnp.arange(length), (2, length))
  variables = module.init(jax.random.key(1), positions, positions)
  table = nn.unbox(variables['params'])['rel_embedding']
  def gathered(table):
    return module.apply({'params': {'rel_embedding': table}}, positions, positions)
  def in_row(table):
    return module.apply({'params': {'rel_embedding': table}}, 2, length,
                        method=layers.RelativePositionBias.in_row)
  np.testing.assert_allclose(in_row(table), gathered(table), rtol=1e-6)
  # Weighted sums, so that a misplaced value changes the table's gradient too;
  # the gradient of bucket n sums the weights of the pairs in bucket n (float64).
  weights = jax.random.normal(jax.random.key(2), (2, CFG.num_heads, length, length))
  def loss(bias_fn):
    return lambda table: jnp.sum(bias_fn(table) * weights)
  relative = np.arange(length)[None, :] - np.arange(length)[:, None]  # key - query
  buckets = np.vectorize(numpy_reference.bucket)(relative, False, 32, 128)
  per_pair = np.asarray(weights, np.float64).sum(0)  # [heads, q, k]
  want = np.stack([per_pair[:, buckets == n].sum(-1) for n in range(32)], -1)
  np.testing.assert_allclose(jax.grad(loss(in_row))(table), want, rtol=1e-4, atol=1e-4)
  # Scatter-adds into a small table serialise on a GPU (the reason in_row exists).
  assert 'scatter' not in str(jax.make_jaxpr(jax.grad(loss(in_row)))(table))
  assert 'scatter' in str(jax.make_jaxpr(jax.grad(loss(gathered)))(table))


# Every projection of the model: attention in/out (training and cached
# orders), the MLP, the output logits and the tied embedding.
PROJECTIONS = ['ble,ehd->blhd', 'bhqd,hde->bqe', 'ble,ef->blf', 'blf,fe->ble',
               'ble,ev->blv', 'ble,ve->blv']


def _operands(equation, key):
  sizes = dict(b=2, l=3, q=3, e=8, h=2, d=4, f=6, v=10)
  (x_axes, kernel_axes), out_axes = equation.split('->')[0].split(','), equation.split('->')[1]
  x, kernel, grad = (jax.random.normal(k, tuple(sizes[a] for a in axes))
                     for k, axes in zip(jax.random.split(key, 3), (x_axes, kernel_axes, out_axes)))
  return x, kernel, grad


@pytest.mark.parametrize('equation', PROJECTIONS)
def test_accumulating_einsum_and_its_gradients_equal_autodiff_in_float32(equation):
  x, kernel, grad = _operands(equation, jax.random.key(0))
  out, vjp = jax.vjp(functools.partial(layers.accumulating_einsum, equation), x, kernel)
  want, want_vjp = jax.vjp(functools.partial(jnp.einsum, equation), x, kernel)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
  for got, expected in zip(vjp(grad), want_vjp(grad)):  # JAX's own transposes of the einsum
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('equation', PROJECTIONS)
def test_accumulating_einsum_and_its_gradients_match_numpy_in_bfloat16(equation):
  x, kernel, grad = (a.astype(jnp.bfloat16) for a in _operands(equation, jax.random.key(1)))
  out, vjp = jax.vjp(functools.partial(layers.accumulating_einsum, equation), x, kernel)
  def as64(a):
    return np.asarray(a, np.float64)

  operands, out_axes = equation.split('->')
  x_axes, kernel_axes = operands.split(',')
  want = (np.einsum(equation, as64(x), as64(kernel)),
          np.einsum(f'{out_axes},{kernel_axes}->{x_axes}', as64(grad), as64(kernel)),
          np.einsum(f'{x_axes},{out_axes}->{kernel_axes}', as64(x), as64(grad)))
  for got, expected in zip((out, *vjp(grad)), want):
    assert got.dtype == jnp.bfloat16
    # Exact products of the bf16 operands, summed and rounded once to bf16's 8 bits.
    np.testing.assert_allclose(as64(got), expected, rtol=2 ** -8, atol=1e-6)


@pytest.mark.parametrize('equation', ['ble,ev->blv', 'ble,ve->blv'])
def test_float32_out_keeps_the_accumulated_logits_unrounded(equation):
  """The vocab logits come out as accumulated in f32 (not rounded to bf16's 8
  bits), and their gradients are the bf16 projection's from the cotangent in bf16."""
  x, kernel, grad = (a.astype(jnp.bfloat16) for a in _operands(equation, jax.random.key(2)))
  out, vjp = jax.vjp(lambda x, kernel: layers.accumulating_einsum(equation, x, kernel, True),
                     x, kernel)
  want = np.einsum(equation, np.asarray(x, np.float64), np.asarray(kernel, np.float64))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out, np.float64), want, rtol=1e-6, atol=1e-6)
  _, rounded_vjp = jax.vjp(functools.partial(layers.accumulating_einsum, equation), x, kernel)
  for got, expected in zip(vjp(grad.astype(jnp.float32)), rounded_vjp(grad)):
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(expected, np.float32))
