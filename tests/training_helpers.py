"""Small experiments and one-update helpers shared by the training tests."""

import jax
import numpy as np

from lamda_jax import config as config_lib
from lamda_jax.configs import tiny
from lamda_jax.training import trainer as trainer_lib

# Scanned layers: the path pods use, with the stacked 'layers' axis in every sharding.
SMALL_MODEL = dict(num_layers=2, d_model=64, num_heads=8, head_dim=8, d_ff=128, vocab_size=128,
                   scan_layers=True)


def experiment(mesh=(1, 1, 1), model=None, **train):
  config = tiny.get_config().to_dict()
  config['model'].update(SMALL_MODEL, **(model or {}))
  config['mesh'] = dict(zip(config_lib.MESH_AXES, mesh))
  config['train'].update(dict(seq_len=32, batch_size=8, warmup_steps=0, optimizer='adamw',
                              learning_rate=1e-3, z_loss=1e-4), **train)
  return config_lib.load(config)


def random_batch(exp, seed=0):
  """A packed batch: two segments per row, a few padded positions, 0/1 weights."""
  rng = np.random.default_rng(seed)
  shape = (exp.train.batch_size, exp.train.seq_len)
  half = shape[1] // 2
  segment_ids = np.concatenate([np.ones((shape[0], half)), np.full((shape[0], half), 2)], 1)
  segment_ids[:, -3:] = 0
  positions = np.concatenate([np.arange(half), np.arange(shape[1] - half)])[None].repeat(
      shape[0], 0)
  return {
      'inputs': rng.integers(3, exp.model.vocab_size, shape).astype(np.int32),
      'targets': rng.integers(3, exp.model.vocab_size, shape).astype(np.int32),
      'loss_weights': (rng.random(shape) < 0.8).astype(np.float32) * (segment_ids != 0),
      'segment_ids': segment_ids.astype(np.int32),
      'positions': positions.astype(np.int32),
      'task_ids': np.zeros(shape, np.int32),
  }


def one_update(exp, batch, devices=None):
  """(initial state, updated state, metrics) fetched to the host, and the updated
  state as it lies on the devices."""
  trainer = trainer_lib.set_up(exp, jax.devices()[:1] if devices is None else devices)
  with trainer.activated():
    state = trainer.initial_state()
    initial = jax.device_get(state)
    new_state, metrics = trainer.update(state, jax.device_put(batch, trainer.batch_sharding))
    return initial, jax.device_get(new_state), jax.device_get(metrics), new_state
