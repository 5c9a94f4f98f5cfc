"""Discriminator heads (finetune.discriminator = 'heads'): the readout, its loss,
its sharding, cached scoring, and starting from or reading runs with and without them."""

import functools

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from lamda_jax import attributes
from lamda_jax.config import ConfigError, ModelConfig
from lamda_jax.finetune import tasks
from lamda_jax.model import decoder
from lamda_jax.model.decoder import Decoder
from lamda_jax.serving import runs
from lamda_jax.training import losses
from tests import training_helpers as helpers

TINY = ModelConfig(num_layers=2, d_model=32, num_heads=2, head_dim=16, d_ff=64, vocab_size=100,
                   dtype='float32')


def _with_heads(experiment):
  return experiment.with_fields(finetune={'discriminator': 'heads'}, train={'tasks': tasks.TASKS})


def test_heads_read_the_final_hidden_state():
  """Head logits = final-norm output @ kernel + bias (numpy), at every position,
  and the vocabulary logits are the same with or without the heads."""
  model = Decoder(TINY, attribute_heads=4)
  tokens = np.arange(24).reshape(2, 12) % TINY.vocab_size
  params = model.init(jax.random.key(0), tokens)['params']
  params = nn.unbox(params)
  params['attribute_heads']['bias'] = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
  (logits, heads), captured = jax.jit(lambda p: model.apply(
      {'params': p}, tokens, readout='both',
      capture_intermediates=lambda module, _: module.name == 'final_norm'))(params)
  hidden = np.asarray(captured['intermediates']['final_norm']['__call__'][0], np.float64)
  np.testing.assert_allclose(logits, hidden @ np.asarray(params['logits_dense'], np.float64),
                             rtol=1e-4, atol=1e-5)  # the captured state is the readouts' input
  want = hidden @ np.asarray(params['attribute_heads']['kernel'], np.float64) + np.asarray(
      params['attribute_heads']['bias'], np.float64)
  np.testing.assert_allclose(heads, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(jax.jit(functools.partial(model.apply, readout='heads'))(
      {'params': params}, tokens), heads, rtol=1e-5, atol=1e-6)
  without = Decoder(TINY)
  trunk = {name: value for name, value in params.items() if name != 'attribute_heads'}
  assert set(nn.unbox(without.init(jax.random.key(0), tokens)['params'])) == set(trunk)
  np.testing.assert_allclose(jax.jit(without.apply)({'params': trunk}, tokens), logits,
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='heads only with attribute_heads > 0'):
    without.apply({'params': trunk}, tokens, readout='heads')


def test_head_loss_is_the_logistic_loss_of_the_task_head():
  """Hand-made batch: an LM token keeps its cross-entropy and z-loss; the
  SENSIBLE and UNSAFE tokens take their own head's logistic loss on the label
  that is their target, and add no z-loss."""
  task = tasks.TASKS.index
  logits = np.log(np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]], np.float32))
  logits = logits + 1.5  # log Z = 1.5, so the z-loss is visible
  head_logits = np.array([[[9, 9, 9, 9], [2.0, -7, -7, -7], [9, 9, 9, -0.5]]], np.float32)
  targets = np.array([[2, 1, 0]], np.int32)
  weights = np.array([[1.0, 1.0, 2.0]], np.float32)
  task_ids = np.array([[task('lm'), task('SENSIBLE'), task('UNSAFE')]], np.int32)
  sums = losses.cross_entropy_sums(logits, targets, weights, task_ids, len(tasks.TASKS), 0.1,
                                   head_logits, losses.head_of_task(tasks.TASKS))

  def logistic(logit, label):
    probability = 1 / (1 + np.exp(-logit))
    return -np.log(probability if label else 1 - probability)

  lm, sensible, unsafe = -np.log(0.1), logistic(2.0, 1), logistic(-0.5, 0)
  np.testing.assert_allclose(sums['loss'], lm + sensible + 2 * unsafe, rtol=1e-5)
  np.testing.assert_allclose(sums['z_loss'], 0.1 * 1.5 ** 2, rtol=1e-5)
  np.testing.assert_allclose(sums['task_loss'][task('SENSIBLE')], sensible, rtol=1e-5)
  np.testing.assert_allclose(sums['task_loss'][task('UNSAFE')], 2 * unsafe, rtol=1e-5)
  assert sums['task_correct'][task('lm')] == 0  # argmax 0, target 2
  assert sums['task_correct'][task('SENSIBLE')] == 1  # logit 2 > 0 and label 1
  assert sums['task_correct'][task('UNSAFE')] == 2  # logit -0.5 < 0 and label 0, weight 2


def _heads_batch(exp, seed=0):
  """helpers.random_batch with every fourth token a discriminator rating: an
  attribute task and a 0/1 label as target."""
  batch = helpers.random_batch(exp, seed)
  rng = np.random.default_rng(seed + 1)
  rated = np.zeros(batch['targets'].shape, bool)
  rated[:, 3::4] = True
  attribute = rng.integers(0, len(attributes.NAMES), rated.shape)
  batch['task_ids'] = np.where(rated, tasks.TASKS.index(attributes.NAMES[0]) + attribute,
                               tasks.TASKS.index('lm')).astype(np.int32)
  batch['targets'] = np.where(rated, rng.integers(0, 2, rated.shape),
                              batch['targets']).astype(np.int32)
  return batch


def test_heads_are_sharded_and_their_update_is_mesh_invariant():
  """On fsdp 4 x tensor 2 the heads' kernel splits its embed axis like every
  other 'embed' parameter, its outputs are replicated, its moments follow, and
  the update equals one device's."""
  exp = _with_heads(helpers.experiment(mesh=(1, 4, 2)))
  batch = _heads_batch(exp)
  _, want, want_metrics, _ = helpers.one_update(_with_heads(helpers.experiment()), batch)
  _, got, metrics, on_mesh = helpers.one_update(exp, batch, jax.devices())
  heads = on_mesh.params['attribute_heads']
  assert {s.data.shape for s in heads['kernel'].addressable_shards} == {(64 // 4, 4)}
  assert {s.data.shape for s in heads['bias'].addressable_shards} == {(4,)}
  mu = optax.tree_utils.tree_get(on_mesh.opt_state, 'mu')['attribute_heads']['kernel']
  assert {s.data.shape for s in mu.addressable_shards} == {(64 // 4, 4)}
  np.testing.assert_allclose(metrics['loss'], want_metrics['loss'], rtol=2e-5)
  assert want_metrics['task_weight'][2:6].sum() > 0  # the heads were trained
  moved = np.abs(got.params['attribute_heads']['kernel'] -
                 want.params['attribute_heads']['kernel']).max()
  assert moved < 1e-4  # lr 1e-3: both moved by about one learning rate, the same way


def test_a_run_is_read_with_the_discriminator_it_was_trained_with(a_run):
  """The shared run has no heads: reading it as a heads run is a clear error
  before any parameter is read, and so is a heads run read without them."""
  experiment, workdir = a_run
  with pytest.raises(ConfigError, match="not fine-tuned with discriminator heads.*"
                                        "discriminator='rating_token'"):
    runs.open_run(_with_heads(experiment), workdir, 'decode.from_run')
  with pytest.raises(ConfigError, match="was fine-tuned with discriminator heads.*'heads'"):
    runs.check_discriminator(experiment, {'layers', decoder.HEADS_NAME}, workdir,
                             'decode.from_run')
  assert runs.open_run(experiment, workdir, 'decode.from_run').model.attribute_heads == 0
