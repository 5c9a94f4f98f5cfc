"""The train state and its shardings, created directly on the mesh.

`jax.eval_shape` gives the state's shapes and logical axis names without
allocating; `init` then runs under `jax.jit` with those shardings as outputs,
so no array is ever materialised whole on one device.
"""

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from lamda_jax.config import ExperimentConfig
from lamda_jax.training import partitioning


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 []: optimizer updates done so far
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 [2]: folded with the step for dropout, so resume is exact


def _reduced_spec(shape, param_shape, param_spec) -> PartitionSpec:
  """The sharding of an optimizer leaf derived from its parameter.

  Shaped like the parameter (Adam's moments): the parameter's spec. The
  parameter with one dimension averaged away (Adafactor's factored row and
  column statistics): the spec without that dimension, so a 137B run does not
  hold a whole [layers, embed, heads] statistic on every device; of equal-sized
  candidates the last is dropped, as optax's factoring does. Anything else
  (counters, scalars) is small and replicated.
  """
  if tuple(shape) == tuple(param_shape):
    return param_spec
  spec = tuple(param_spec) + (None,) * (len(param_shape) - len(param_spec))
  for dim in reversed(range(len(param_shape))):
    if tuple(shape) == param_shape[:dim] + param_shape[dim + 1:]:
      return PartitionSpec(*spec[:dim], *spec[dim + 1:])
  return PartitionSpec()


def _optimizer_specs(opt_state, params, param_specs):
  """Optimizer leaves take their sharding from the parameter they belong to."""
  params_structure = jax.tree.structure(params)

  def specs_for(subtree):
    if jax.tree.structure(subtree) != params_structure:
      return jax.tree.map(lambda _: PartitionSpec(), subtree)
    return jax.tree.map(lambda leaf, param, spec: _reduced_spec(leaf.shape, param.shape, spec),
                        subtree, params, param_specs)

  return jax.tree.map(specs_for, opt_state,
                      is_leaf=lambda x: jax.tree.structure(x) == params_structure)


def _init_fn(model, optimizer, seq_len: int):
  def init(rng):
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    params = model.init(rng, tokens)['params']
    unboxed = nn.unbox(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=unboxed,
                      opt_state=optimizer.init(unboxed), rng=rng), params
  return init


def abstract_state(experiment: ExperimentConfig, model, optimizer, mesh):
  """(TrainState of ShapeDtypeStructs carrying their shardings, TrainState of shardings)."""
  init = _init_fn(model, optimizer, experiment.train.seq_len)
  abstract, boxed_params = jax.eval_shape(init, jax.random.PRNGKey(0))
  param_specs = nn.get_partition_spec(boxed_params)
  specs = TrainState(step=PartitionSpec(), params=param_specs,
                     opt_state=_optimizer_specs(abstract.opt_state, abstract.params, param_specs),
                     rng=PartitionSpec())
  rules = experiment.logical_axis_rules
  partitioning.check_divisible(abstract.params, param_specs, mesh, rules)
  shardings = partitioning.logical_to_sharding(specs, mesh, rules)
  with_shardings = jax.tree.map(
      lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
      abstract, shardings)
  return with_shardings, shardings


def create(experiment: ExperimentConfig, model, optimizer, shardings) -> TrainState:
  """A fresh state, initialised shard by shard on the devices that own it."""
  init = _init_fn(model, optimizer, experiment.train.seq_len)
  return jax.jit(lambda rng: init(rng)[0], out_shardings=shardings)(
      jax.random.PRNGKey(experiment.train.seed))
