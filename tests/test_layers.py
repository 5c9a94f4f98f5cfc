"""Each building block against an independent numpy computation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamda_jax import layers
from lamda_jax.config import ModelConfig
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
