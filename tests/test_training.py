"""The sharded train step: mesh invariance, real sharding, accumulation, schedules."""

import dataclasses
import math

import jax
import numpy as np
import optax
import pytest

from lamda_jax.config import ConfigError
from lamda_jax.data import packed, packing, pipeline
from lamda_jax.data.sampler import MixtureSampler
from lamda_jax.training import loop, losses, optimizers
from tests import training_helpers as helpers


def _assert_trees_close(a, b, rtol=2e-5, atol=2e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def _assert_same_update(got, want, learning_rate=1e-3):
  """After one AdamW step, mu = (1 - b1) * gradient: comparing it compares the
  gradients themselves. Parameters moved by lr * g / (|g| + eps), which turns
  float noise in near-zero gradients into up to ~5% of one step, hence the
  tolerance of a tenth of the learning rate for them."""
  jax.tree.map(  # float32 sums in another order: error relative to the array's scale
      lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=2e-5 * np.abs(y).max()),
      optax.tree_utils.tree_get(got.opt_state, 'mu'),
      optax.tree_utils.tree_get(want.opt_state, 'mu'))
  _assert_trees_close(got.params, want.params, rtol=0, atol=0.1 * learning_rate)


@pytest.fixture(scope='module')
def single_device_update():
  exp = helpers.experiment()
  return helpers.one_update(exp, helpers.random_batch(exp))


@pytest.mark.parametrize('mesh', [(8, 1, 1), (1, 8, 1), (2, 2, 2), (1, 1, 8)])
def test_update_on_a_mesh_equals_single_device(mesh, single_device_update):
  exp = helpers.experiment(mesh=mesh)
  initial, updated, metrics, _ = helpers.one_update(exp, helpers.random_batch(exp), jax.devices())
  want_initial, want_updated, want_metrics, _ = single_device_update
  _assert_trees_close(initial.params, want_initial.params, rtol=0, atol=0)  # same init, sharded
  for name in ('loss', 'grad_norm', 'z_loss'):
    np.testing.assert_allclose(metrics[name], want_metrics[name], rtol=2e-5)
  _assert_same_update(updated, want_updated)


def test_rope_and_grouped_query_update_on_a_mesh_equals_single_device():
  """Llama 2's options under fsdp 2 x tensor 2: each tensor shard holds one of
  the two key/value heads, and the update is one device's."""
  model = {'position_encoding': 'rope', 'num_kv_heads': 2}
  single = helpers.experiment(model=model)
  want = helpers.one_update(single, helpers.random_batch(single))
  exp = helpers.experiment(mesh=(2, 2, 2), model=model)
  initial, updated, metrics, state = helpers.one_update(exp, helpers.random_batch(exp),
                                                        jax.devices())
  _assert_trees_close(initial.params, want[0].params, rtol=0, atol=0)
  np.testing.assert_allclose(metrics['loss'], want[2]['loss'], rtol=2e-5)
  _assert_same_update(updated, want[1])
  key = state.params['layers']['attention']['key']  # [layers, embed, kv_heads, head_dim]
  assert key.shape == (2, 64, 2, 8) and _shard_shape(key) == (2, 32, 1, 8)


def _shard_shape(array):
  shapes = {shard.data.shape for shard in array.addressable_shards}
  assert len(shapes) == 1
  return shapes.pop()


def test_parameters_and_optimizer_state_are_really_sharded():
  exp = helpers.experiment(mesh=(1, 4, 2))  # fsdp 4 over 'embed', tensor 2 over heads/mlp/vocab
  _, _, _, state = helpers.one_update(exp, helpers.random_batch(exp), jax.devices())
  params, mu = state.params, optax.tree_utils.tree_get(state.opt_state, 'mu')
  assert _shard_shape(params['token_embedder']['embedding']) == (128 // 2, 64 // 4)
  assert _shard_shape(params['layers']['attention']['query']) == (2, 64 // 4, 8 // 2, 8)
  assert _shard_shape(params['layers']['mlp']['wi_0']) == (2, 64 // 4, 128 // 2)
  assert _shard_shape(params['layers']['mlp']['wo']) == (2, 128 // 2, 64 // 4)
  assert _shard_shape(params['logits_dense']) == (64 // 4, 128 // 2)
  assert _shard_shape(mu['layers']['mlp']['wi_0']) == (2, 64 // 4, 128 // 2)  # moments follow
  embedding = params['token_embedder']['embedding']
  assert len({shard.device for shard in embedding.addressable_shards}) == 8
  assert len({str(shard.index) for shard in embedding.addressable_shards}) == 8


def test_adafactor_state_shards_where_it_can():
  """FSDP over 8 devices: a statistic shaped like its parameter (the unfactored
  second moments of vectors) is sharded like it; the factored row and column
  statistics and the counters are small and replicated."""
  exp = helpers.experiment(mesh=(1, 8, 1), optimizer='adafactor')
  initial, updated, metrics, on_devices = helpers.one_update(exp, helpers.random_batch(exp),
                                                             jax.devices())
  assert np.isfinite(metrics['loss'])
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), initial.params, updated.params)
  assert all(jax.tree.leaves(changed))

  params = on_devices.params
  structure = jax.tree.structure(params)
  like_params = [subtree for subtree in jax.tree.leaves(
      on_devices.opt_state, is_leaf=lambda x: jax.tree.structure(x) == structure)
      if jax.tree.structure(subtree) == structure]  # per-parameter statistics
  assert like_params
  sharded = replicated = 0
  for statistics in like_params:
    for stat, param in zip(jax.tree.leaves(statistics), jax.tree.leaves(params)):
      if stat.shape == param.shape:
        assert stat.sharding.is_equivalent_to(param.sharding, stat.ndim)
        sharded += not stat.sharding.is_fully_replicated
      else:
        assert stat.sharding.is_fully_replicated
        replicated += 1
  assert sharded and replicated  # both kinds exist, and the first is really split
  for leaf in jax.tree.leaves(on_devices.opt_state):
    if leaf.ndim == 0:
      assert leaf.sharding.is_fully_replicated


def test_gradient_accumulation_equals_one_big_batch():
  batch = helpers.random_batch(helpers.experiment())
  _, want, want_metrics, _ = helpers.one_update(helpers.experiment(), batch)
  accumulated = helpers.experiment(microbatches=4)
  _, got, metrics, _ = helpers.one_update(accumulated, batch)
  np.testing.assert_allclose(metrics['loss'], want_metrics['loss'], rtol=1e-6)
  np.testing.assert_allclose(metrics['grad_norm'], want_metrics['grad_norm'], rtol=1e-5)
  _assert_same_update(got, want)


def test_gradient_accumulation_on_a_mesh():
  batch = helpers.random_batch(helpers.experiment(batch_size=16), seed=3)
  _, want, _, _ = helpers.one_update(helpers.experiment(batch_size=16), batch)
  exp = helpers.experiment(mesh=(4, 2, 1), batch_size=16, microbatches=2)
  _, got, _, _ = helpers.one_update(exp, batch, jax.devices())
  _assert_same_update(got, want)


def test_non_finite_update_is_not_applied():
  exp = helpers.experiment()
  batch = helpers.random_batch(exp)
  batch['loss_weights'][0, 0] = np.inf
  initial, updated, metrics, _ = helpers.one_update(exp, batch)
  assert not metrics['finite']
  jax.tree.map(np.testing.assert_array_equal, updated.params, initial.params)
  jax.tree.map(np.testing.assert_array_equal, updated.opt_state, initial.opt_state)


def test_per_task_loss_sums_to_total():
  exp = helpers.experiment(tasks=('generate', 'rate'))
  batch = helpers.random_batch(exp)
  batch['task_ids'] = (batch['positions'] % 2).astype(np.int32)
  _, _, metrics, _ = helpers.one_update(exp, batch)
  weights = [batch['loss_weights'][batch['task_ids'] == t].sum() for t in (0, 1)]
  np.testing.assert_allclose(metrics['task_weight'], weights)
  np.testing.assert_allclose(metrics['task_loss'].sum() / sum(weights), metrics['loss'], rtol=1e-5)


def test_accuracy_counts_tokens_whose_target_has_the_largest_logit():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 40)).astype(np.float32)  # no ties: argmax decides
  targets = rng.integers(0, 40, (3, 5)).astype(np.int32)
  targets[0] = logits[0].argmax(-1)  # a row all right
  weights = rng.uniform(0.5, 2.0, (3, 5)).astype(np.float32)
  sums = losses.cross_entropy_sums(logits, targets, weights, np.zeros((3, 5), np.int32), 1, 0.0)
  want = np.sum(weights * (logits.argmax(-1) == targets))
  np.testing.assert_allclose(sums['task_correct'][0], want, rtol=1e-6)
  # A tie at the top counts as right, whichever of the tied entries is the target.
  tied = np.array([[[1.0, 3.0, 3.0, 0.0]]], np.float32)
  for target, right in ((1, 1), (2, 1), (0, 0)):
    sums = losses.cross_entropy_sums(tied, np.array([[target]], np.int32), np.ones((1, 1)),
                                     np.zeros((1, 1), np.int32), 1, 0.0)
    assert sums['task_correct'][0] == right


def test_microbatches_must_divide_the_data_parallel_batch():
  exp = helpers.experiment(mesh=(8, 1, 1), microbatches=2)  # 4 rows per microbatch, 8 devices
  datasets = pipeline.Datasets(train=None, eval=None, packing_efficiency=1.0)
  with pytest.raises(ConfigError, match=r'config\.train\.microbatches: 4 sequences cannot be '
                                        r'split over the 8 devices'):
    loop.run(exp, '/nonexistent', datasets)


def test_indivisible_sharding_names_the_parameter():
  exp = helpers.experiment(mesh=(1, 1, 8), model={'num_heads': 4})
  with pytest.raises(ConfigError, match=r"\['layers'\]\['attention'\]\['key'\] dimension 2 "
                                        r"\('kv_heads', size 4\) is split over mesh axes"):
    helpers.one_update(exp, helpers.random_batch(exp), jax.devices())


@pytest.mark.parametrize('schedule,step,want', [
    ('cosine', 0, 0.0), ('cosine', 5, 0.5), ('cosine', 10, 1.0), ('cosine', 110, 0.1),
    ('cosine', 60, 0.55), ('rsqrt', 10, 1.0), ('rsqrt', 40, 1 / math.sqrt(4)),
    ('constant', 10, 1.0), ('constant', 500, 1.0),
    # wsd: warmup to step 10, the peak to step 70, then down to 0.1 over the last 40.
    ('wsd', 5, 0.5), ('wsd', 70, 1.0), ('wsd', 80, 1.0 - 0.9 / 4), ('wsd', 110, 0.1),
    ('wsd', 500, 0.1),
])
def test_learning_rate_schedules(schedule, step, want):
  cfg = helpers.experiment(schedule=schedule, warmup_steps=10, steps=110, learning_rate=1.0,
                           final_learning_rate_fraction=0.1,
                           decay_steps=40 if schedule == 'wsd' else 0).train
  assert float(optimizers.learning_rate_schedule(cfg)(step)) == pytest.approx(want, abs=1e-6)


def test_wsd_equals_constant_until_its_decay():
  """What lets a cooldown branch from a constant run's checkpoint."""
  kwargs = dict(warmup_steps=10, steps=110, learning_rate=1.0)
  constant = optimizers.learning_rate_schedule(helpers.experiment(schedule='constant',
                                                                  **kwargs).train)
  wsd = optimizers.learning_rate_schedule(helpers.experiment(schedule='wsd', decay_steps=40,
                                                             **kwargs).train)
  steps = np.arange(111)
  assert np.array_equal(np.asarray(wsd(steps))[:71], np.asarray(constant(steps))[:71])
  assert np.all(np.diff(np.asarray(wsd(steps))[70:]) < 0)


@pytest.mark.parametrize('overrides,message', [
    ({'schedule': 'wsd'}, r'train\.decay_steps: the wsd schedule decays over 1 to steps - '
                          r'warmup_steps \(100\) steps, got 0'),
    ({'schedule': 'wsd', 'decay_steps': 101}, r'train\.decay_steps: .* got 101'),
    ({'schedule': 'cosine', 'decay_steps': 5}, r"train\.decay_steps: is read by the wsd "
                                               r"schedule only, not 'cosine'"),
])
def test_wsd_bad_decay_steps(overrides, message):
  with pytest.raises(ConfigError, match=message):
    helpers.experiment(warmup_steps=10, steps=110, **overrides)


def _sampler_for(exp, directory, rows_per_epoch=4):
  examples = [packing.Example(tuple(range(3, 3 + exp.train.seq_len)), (1.0,) * exp.train.seq_len)
              for _ in range(rows_per_epoch * exp.train.batch_size)]
  rows = packed.write(str(directory / 'rows'), packing.pack_rows(examples, exp.train.seq_len),
                      exp.train.seq_len)
  return MixtureSampler({'lm': rows}, {'lm': 1.0},
                        exp.train.batch_size, seed=0)


class _PoisonedSampler(MixtureSampler):
  """Real rows, but the loss weights at one step are NaN."""

  def __init__(self, sampler, bad_step):
    super().__init__(sampler.sources, {'lm': 1.0}, sampler.global_batch, sampler.seed)
    self.bad_step = bad_step

  def batch(self, step):
    batch = super().batch(step)
    if step == self.bad_step:
      batch['loss_weights'] = np.full_like(batch['loss_weights'], np.nan)
    return batch


def test_non_finite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  exp = helpers.experiment(mesh=(-1, 1, 1), steps=10, checkpoint_every=2, log_every=5,
                           eval_every=0)
  sampler = _sampler_for(exp, tmp_path)
  datasets = pipeline.Datasets(train=_PoisonedSampler(sampler, bad_step=4),
                                     eval=sampler, packing_efficiency=1.0)
  with pytest.raises(loop.TrainingDiverged, match=r'^Step 5: loss nan'):
    loop.run(exp, str(tmp_path), datasets)
  # Checkpoints at 2 and 4 were taken before the bad step; nothing after it was saved.
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [2, 4]
  resumed = dataclasses.replace(exp, train=dataclasses.replace(exp.train, steps=6))
  summary = loop.run(resumed, str(tmp_path), pipeline.Datasets(sampler, sampler, 1.0))
  assert summary['start_step'] == 4 and math.isfinite(summary['loss'])
  # The same rows split into two streams make other batches: not a resume.
  streamed = MixtureSampler(sampler.sources, {'lm': 1.0}, sampler.global_batch, 0, streams=2)
  with pytest.raises(ValueError, match='written with data.streams=1, this run has 2'):
    loop.run(resumed, str(tmp_path), pipeline.Datasets(streamed, streamed, 1.0))


def test_training_lowers_the_loss(tmp_path):
  exp = helpers.experiment(mesh=(-1, 1, 1), steps=40, log_every=10, eval_every=40,
                           checkpoint_every=40, learning_rate=3e-3)
  sampler = _sampler_for(exp, tmp_path)
  summary = loop.run(exp, str(tmp_path), pipeline.Datasets(sampler, sampler, 1.0))
  losses = [line for line in (tmp_path / 'metrics.jsonl').read_text().splitlines() if '"loss"' in line]
  assert len(losses) == 40
  assert summary['loss'] < 1.0 < float(__import__('json').loads(losses[0])['loss'])
  assert (tmp_path / 'tensorboard').is_dir() and any((tmp_path / 'tensorboard').iterdir())
