"""The device mesh and the mapping of logical axis names onto it.

Parameters and activations name their axes ('embed', 'mlp', 'batch', ...); the
config's rules table maps names to mesh axes ('data', 'fsdp', 'tensor'). Every
array's sharding derives from that table, so a new strategy is a config edit.
"""

import math

import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from lamda_jax.config import MESH_AXES, ConfigError, ExperimentConfig

BATCH_AXES = ('batch', 'length')  # every input array of a batch is [batch, length]


def slice_shapes(sizes: dict[str, int], slices: int):
  """(per-slice ICI shape, across-slice DCN shape) of a multi-slice mesh."""
  return ((sizes['data'] // slices, sizes['fsdp'], sizes['tensor']), (slices, 1, 1))


def create_mesh(experiment: ExperimentConfig, devices=None) -> Mesh:
  """A ('data', 'fsdp', 'tensor') mesh over all devices (of every host).

  `mesh_utils` orders devices so that 'tensor', the innermost axis, stays on
  the fastest interconnect of a TPU slice; with `mesh.dcn_data` slices, only
  the data axis crosses the slower network between them.
  """
  devices = jax.devices() if devices is None else devices
  sizes = experiment.mesh.resolve(len(devices))
  shape = tuple(sizes[axis] for axis in MESH_AXES)
  slices = experiment.mesh.dcn_data
  if slices > 1:
    found = {getattr(device, 'slice_index', None) for device in devices}
    if None in found or len(found) != slices:
      raise ConfigError(f'config.mesh.dcn_data: {slices} slices requested but the devices '
                        f'come from {len(found - {None}) or "no"} slices')
    ici, dcn = slice_shapes(sizes, slices)
    return Mesh(mesh_utils.create_hybrid_device_mesh(ici, dcn, devices), MESH_AXES)
  try:
    device_array = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
  except (AssertionError, NotImplementedError, ValueError):  # CPU / uncommon topologies
    device_array = np.asarray(devices).reshape(shape)
  return Mesh(device_array, MESH_AXES)


def logical_to_sharding(logical_specs, mesh: Mesh, rules):
  """A tree of logical PartitionSpecs -> the same tree of NamedShardings."""
  return jax.tree.map(
      lambda spec: NamedSharding(mesh, nn.logical_to_mesh_axes(spec, rules)), logical_specs,
      is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
  return NamedSharding(mesh, nn.logical_to_mesh_axes(BATCH_AXES, rules))


def check_divisible(abstract_tree, logical_specs, mesh: Mesh, rules):
  """Every sharded dimension must split evenly: a clear error names the array."""
  flat_shapes = jax.tree_util.tree_flatten_with_path(abstract_tree)[0]
  flat_specs = jax.tree.leaves(logical_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
  for (path, leaf), logical in zip(flat_shapes, flat_specs):
    mesh_spec = nn.logical_to_mesh_axes(logical, rules)
    for dim, (size, logical_axis, mesh_axes) in enumerate(zip(leaf.shape, logical, mesh_spec)):
      mesh_axes = (mesh_axes,) if isinstance(mesh_axes, str) else (mesh_axes or ())
      ways = math.prod(mesh.shape[axis] for axis in mesh_axes)
      if size % ways:
        name = jax.tree_util.keystr(path)
        raise ConfigError(
            f'config.logical_axis_rules: {name} dimension {dim} ({logical_axis!r}, size {size}) '
            f'is split over mesh axes {mesh_axes} = {ways} devices, which does not divide it')


def check_batch_divisible(global_batch: int, mesh: Mesh, rules, field='train.batch_size'):
  spec = nn.logical_to_mesh_axes(BATCH_AXES, rules)[0]
  axes = (spec,) if isinstance(spec, str) else (spec or ())
  ways = math.prod(mesh.shape[axis] for axis in axes)
  if global_batch % ways:
    raise ConfigError(f'config.{field}: {global_batch} sequences cannot be split over the '
                      f'{ways} devices of mesh axes {axes}')
