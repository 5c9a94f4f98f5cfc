"""The sharded set-up of training, built in one place for the loop, the tests
and the benchmarks: mesh -> model -> optimizer -> abstract state with its
shardings -> the jitted (pjit) update and eval steps.
"""

import contextlib
import dataclasses
import functools
from typing import Callable

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding
import optax

from lamda_jax.config import ExperimentConfig
from lamda_jax.data import packing
from lamda_jax.model import decoder
from lamda_jax.model.decoder import Decoder
from lamda_jax.training import optimizers, partitioning, train_state, train_step


@dataclasses.dataclass(frozen=True)
class Trainer:
  experiment: ExperimentConfig
  mesh: Mesh
  model: Decoder
  optimizer: optax.GradientTransformation
  abstract: train_state.TrainState  # ShapeDtypeStructs carrying their shardings
  shardings: train_state.TrainState  # NamedShardings
  batch_sharding: NamedSharding
  update: Callable  # (state, batch) -> (state, metrics); the state is donated, updated in place
  evaluate: Callable  # (params, batch) -> loss and accuracy sums

  @contextlib.contextmanager
  def activated(self):
    """The mesh and sharding rules under which the model is traced and run."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.experiment.logical_axis_rules):
      yield self

  def initial_state(self) -> train_state.TrainState:
    return train_state.create(self.experiment, self.model, self.optimizer, self.shardings)

  def abstract_batch(self) -> dict:
    """A global batch as ShapeDtypeStructs with its sharding, for ahead-of-time lowering."""
    shape = (self.experiment.train.batch_size, self.experiment.train.seq_len)
    return {field: jax.ShapeDtypeStruct(shape, packing.field_dtype(field),
                                        sharding=self.batch_sharding)
            for field in packing.FIELDS}

  def to_device(self, batch: dict) -> dict:
    """This host's rows of a global batch -> global arrays sharded over the mesh."""
    return {name: jax.make_array_from_process_local_data(self.batch_sharding, array)
            for name, array in batch.items()}


def set_up(experiment: ExperimentConfig, devices=None) -> Trainer:
  """Everything a sharded train step needs, on `devices` (default: all of them)."""
  cfg, rules = experiment.train, experiment.logical_axis_rules
  mesh = partitioning.create_mesh(experiment, devices)
  partitioning.check_batch_divisible(cfg.batch_size // cfg.microbatches, mesh, rules,
                                     field='train.microbatches')
  model, optimizer = decoder.for_experiment(experiment), optimizers.make_optimizer(cfg)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract, shardings = train_state.abstract_state(experiment, model, optimizer, mesh)
  batch_sharding = partitioning.batch_sharding(mesh, rules)
  update = jax.jit(
      functools.partial(train_step.train_step, model=model, optimizer=optimizer,
                        schedule=optimizers.learning_rate_schedule(cfg), cfg=cfg),
      in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None),
      donate_argnums=0)
  evaluate = jax.jit(functools.partial(train_step.eval_step, model=model, cfg=cfg),
                     in_shardings=(shardings.params, batch_sharding))
  return Trainer(experiment, mesh, model, optimizer, abstract, shardings, batch_sharding,
                 update, evaluate)
