"""experiments/scaling_law.py: the power-law fits recover known exponents, the
compute frontier is the lower envelope, and the command runs small."""

import json

import numpy as np
import pytest

from experiments import scaling_law
from lamda_jax import config as config_lib
from tests.configs import tiny_docs


@pytest.mark.parametrize('alpha,x_c,x', [
    (0.076, 8.8e13, np.geomspace(1e4, 1e7, 5)),  # Kaplan's L(N), at CPU sizes
    (0.050, 3.1e8 * 8.64e19, np.geomspace(1e12, 1e16, 6)),  # L(C), C_c in FLOPs
])
def test_fit_recovers_known_exponents_from_noisy_losses(alpha, x_c, x):
  noise = np.exp(np.random.default_rng(0).normal(0, 0.002, len(x)))  # 0.2% in the loss
  fit = scaling_law.fit_power_law(x, (x_c / x) ** alpha * noise)
  assert fit['alpha'] == pytest.approx(alpha, rel=0.02)
  assert fit['rms_log_error'] < 0.005
  assert 0 < fit['alpha_stderr'] < 0.02 * alpha
  exact = scaling_law.fit_power_law(x, (x_c / x) ** alpha)
  assert exact['x_c'] == pytest.approx(x_c, rel=1e-6) and exact['rms_log_error'] < 1e-9


def test_fit_needs_two_distinct_sizes():
  with pytest.raises(ValueError, match='two or more distinct x'):
    scaling_law.fit_power_law([10, 10], [3.0, 2.9])


def test_frontier_keeps_the_points_no_cheaper_point_beats():
  points = [{'compute': c, 'eval_loss': loss} for c, loss in
            [(4, 3.0), (1, 5.0), (2, 4.0), (3, 4.5), (8, 3.1), (16, 2.0)]]
  assert [(p['compute'], p['eval_loss']) for p in scaling_law.frontier(points)] == [
      (1, 5.0), (2, 4.0), (4, 3.0), (16, 2.0)]


def test_a_schedule_that_depends_on_the_total_steps_is_refused():
  config = tiny_docs.get_config()
  config.train.schedule = 'cosine'
  with pytest.raises(config_lib.ConfigError, match="config.train.schedule: 'cosine' depends"):
    scaling_law.size_variants(config_lib.load(config), ['1x32'], [2, 4])


@pytest.mark.slow
def test_the_sweep_runs_small(tmp_path):
  config = tiny_docs.get_config()
  config.train.update(seq_len=32, batch_size=8, eval_batches=1, log_every=2,
                      peak_flops_per_device=1e12)
  results = scaling_law.run(config_lib.load(config), str(tmp_path), ['1x32', '1x64'], ['4', '2'])
  points = results['points']
  assert [(p['size'], p['steps']) for p in points] == [
      ('1x32', 2), ('1x32', 4), ('1x64', 2), ('1x64', 4)]
  for p in points:  # 1 layer, d_ff 4 d: 4 d^2 attention + 3 x 4 d^2 gated FFN + 3 norms + bias table
    d = int(p['size'].split('x')[1])
    assert p['params'] == 16 * d * d + 3 * d + (d // 32) * 32
    assert p['compute'] == 6 * p['params'] * p['steps'] * 8 * 32
    assert 0 < p['eval_loss'] < 20
  assert results['L(N)']['alpha'] == pytest.approx(-np.polyfit(
      np.log([16 * 32 ** 2 + 96 + 32, 16 * 64 ** 2 + 192 + 64]),
      np.log([p['eval_loss'] for p in points if p['steps'] == 4]), 1)[0])
  assert json.loads((tmp_path / 'scaling.json').read_text())['L(C)'] == results['L(C)']
  for name in ('loss_vs_params.png', 'loss_vs_compute.png', 'curves.png'):
    assert (tmp_path / name).stat().st_size > 0
