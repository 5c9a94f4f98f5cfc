"""`--mode plan`: what a config's training run costs on a TPU target.

Everything is derived from abstract shapes under the config's own sharding
rules (an `AbstractMesh` of the target's device count, so no device is
needed): bytes per device of parameters, gradients and optimizer state; an
estimate of activations from the remat policy; step time and days at a given
utilization. With `plan.compile`, the real train step is lowered and compiled
ahead of time on simulated CPU devices and XLA's own memory analysis is
reported beside the estimate.
"""

import json
import math
import os

import flax.linen as nn
import jax
from jax.sharding import AbstractMesh

from lamda_jax.config import (
  GIB,
  MESH_AXES,
  REMAT_POLICIES,
  ConfigError,
  ExperimentConfig,
)
from lamda_jax.model import decoder, stats
from lamda_jax.training import optimizers, partitioning, train_state
from lamda_jax.training import trainer as trainer_lib

SECONDS_PER_DAY = 86_400
# Remat policies from least to most recomputation: the order a plan tries them
# in when the configured one does not fit.
REMAT_ORDER = ('none', 'dots', 'dots_no_batch', 'full')
assert set(REMAT_ORDER) == set(REMAT_POLICIES)


def _mesh_sizes(experiment: ExperimentConfig) -> dict[str, int]:
  return experiment.mesh.resolve(experiment.plan.devices)


def _abstract_mesh(experiment: ExperimentConfig) -> AbstractMesh:
  """The target's mesh without its devices; the batch must split over it as on the pod."""
  sizes, train, target = _mesh_sizes(experiment), experiment.train, experiment.plan
  mesh = AbstractMesh(tuple(sizes[axis] for axis in MESH_AXES), MESH_AXES)
  try:
    partitioning.check_batch_divisible(train.batch_size // train.microbatches, mesh,
                                       experiment.logical_axis_rules,
                                       field='train.microbatches')
  except ConfigError as error:
    raise ConfigError(f'{error} (planned on {target.chips} {target.target} chips = '
                      f'{target.devices} devices, mesh {sizes})') from None
  return mesh


def _ways(logical: str, sizes: dict[str, int], rules) -> int:
  """How many devices one logical axis is split over."""
  axes = nn.logical_to_mesh_axes((logical,), rules)[0]
  axes = (axes,) if isinstance(axes, str) else (axes or ())
  return math.prod(sizes[axis] for axis in axes)


def _bytes_per_device(tree) -> int:
  return sum(math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
             for leaf in jax.tree.leaves(tree))


def state_bytes(experiment: ExperimentConfig) -> dict[str, int]:
  """Parameters, gradients and optimizer state per device: the train state's
  own shardings (the rules the loop uses), laid on an abstract mesh."""
  mesh = _abstract_mesh(experiment)
  model, optimizer = decoder.for_experiment(experiment), optimizers.make_optimizer(experiment.train)
  with nn.logical_axis_rules(experiment.logical_axis_rules):
    abstract, _ = train_state.abstract_state(experiment, model, optimizer, mesh)
  params = _bytes_per_device(abstract.params)
  # Gradients have the parameters' shapes, dtypes and shardings.
  return {'params': params, 'grads': params, 'opt_state': _bytes_per_device(abstract.opt_state)}


def activation_bytes(experiment: ExperimentConfig, remat_policy: str | None = None,
                     microbatches: int | None = None) -> dict[str, int]:
  """An estimate of activation memory per device for one microbatch.

  `saved`: what the backward pass keeps from the forward, per layer, times
  the layers: the layer input always (the scan carry), the projections' outputs
  under 'dots_no_batch', the attention's batched dots too under 'dots', and the
  norms, softmax and activations under 'none'. `transient`: one layer
  recomputed and differentiated at a time (f32 attention scores, the MLP's
  hidden units, the layer's FSDP-gathered weights and their gradients).
  `logits`: the f32 logits, their log-softmax and gradient.
  """
  cfg, train = experiment.model, experiment.train
  policy = remat_policy or cfg.remat_policy
  microbatches = microbatches or train.microbatches
  sizes, rules = _mesh_sizes(experiment), experiment.logical_axis_rules
  sequences = train.batch_size // microbatches / _ways('batch', sizes, rules)
  tokens, length = sequences * train.seq_len, train.seq_len
  heads = cfg.num_heads / _ways('heads', sizes, rules)
  kv_heads = cfg.kv_heads / _ways('kv_heads', sizes, rules)
  hidden = cfg.d_ff / _ways('mlp', sizes, rules)
  vocab = cfg.vocab_size / _ways('vocab', sizes, rules)
  width = jax.numpy.dtype(cfg.dtype).itemsize
  f32 = 4
  gates = len(cfg.activations)

  layer_input = tokens * cfg.d_model * width
  projections = tokens * ((heads + 2 * kv_heads) * cfg.head_dim + 2 * cfg.d_model
                          + gates * hidden) * width
  batched_dots = tokens * heads * (length + cfg.head_dim) * width
  elementwise = tokens * (4 * cfg.d_model * width + heads * length * f32
                          + (gates + 1) * hidden * width)
  per_layer = layer_input + {
      'full': 0,
      'dots_no_batch': projections,
      'dots': projections + batched_dots,
      'none': projections + batched_dots + elementwise,
  }[policy]
  layer_params = stats.flops_per_token(cfg, length)['flops_per_token_dense'] / 6
  layer_params = (layer_params - cfg.d_model * cfg.vocab_size) / cfg.num_layers
  param_width = jax.numpy.dtype(cfg.param_dtype).itemsize
  transient = (3 * sequences * heads * length * length * f32
               + tokens * (gates + 2) * hidden * width
               + 2 * layer_params / _ways('heads', sizes, rules) * param_width)
  logits = 3 * tokens * vocab * f32
  return {'saved': int(per_layer * cfg.num_layers), 'transient': int(transient),
          'logits': int(logits)}


def _memory(experiment: ExperimentConfig, state: dict[str, int], **activation_options):
  activations = activation_bytes(experiment, **activation_options)
  total = sum(state.values()) + sum(activations.values())
  return {**state, 'activations': sum(activations.values()),
          'activations_detail': activations, 'total': total}


def _fitting_alternative(experiment: ExperimentConfig, state, device_bytes, scale: float) -> str:
  """The least recomputation (then the fewest microbatches) whose estimate, times
  `scale` (XLA's figure over the estimate, when compiled), fits; in words."""
  train = experiment.train
  ways = _ways('batch', _mesh_sizes(experiment), experiment.logical_axis_rules)
  for microbatches in (m for m in (1, 2, 4, 8, 16, 32) if m >= train.microbatches
                       and train.batch_size % (m * ways) == 0):
    for policy in REMAT_ORDER:
      total = scale * _memory(experiment, state, remat_policy=policy,
                              microbatches=microbatches)['total']
      if total <= device_bytes:
        return (f'--config.model.remat_policy={policy} --config.train.microbatches='
                f'{microbatches} (~{total / GIB:.2f} GiB per device)')
  return ('no remat policy or microbatch count fits: shard further (a larger fsdp or '
          'tensor axis in config.mesh / logical_axis_rules) or plan more chips')


def plan(experiment: ExperimentConfig, compiled: dict | None = None) -> dict:
  """The plan as one dict: sizes, FLOPs, time and memory per device. With
  `compiled` (XLA's memory analysis), its total decides whether the run fits."""
  cfg, train, target = experiment.model, experiment.train, experiment.plan
  chip = target.chip
  described = stats.describe(experiment)
  tokens_per_step = train.batch_size * train.seq_len
  flops_per_step = described['flops_per_token'] * tokens_per_step
  achieved = target.chips * chip.peak_flops * target.utilization
  step_seconds = flops_per_step / achieved
  state = state_bytes(experiment)
  memory = _memory(experiment, state)
  device_bytes = chip.hbm_bytes / chip.devices_per_chip
  needed = compiled['total'] if compiled else memory['total']
  result = {
      'name': experiment.name,
      'target': target.target, 'chips': target.chips, 'devices': target.devices,
      'chip_source': chip.source,
      'peak_flops_per_chip': chip.peak_flops, 'utilization': target.utilization,
      'mesh': _mesh_sizes(experiment), 'remat_policy': cfg.remat_policy,
      'microbatches': train.microbatches,
      'params_total': described['params_total'],
      'params_non_embedding': described['params_non_embedding'],
      'flops_per_token': described['flops_per_token'],
      'tokens_per_step': tokens_per_step, 'steps': train.steps,
      'tokens_total': tokens_per_step * train.steps,
      'step_seconds': step_seconds,
      'days': train.steps * step_seconds / SECONDS_PER_DAY,
      'memory_per_device': memory,
      'hbm_per_device': device_bytes,
      'fits': needed <= device_bytes,
  }
  if compiled:
    result['compiled'] = compiled
    result['estimate_over_compiled'] = memory['total'] / compiled['total']
  if target.total_flops:
    result['total_flops'] = target.total_flops
    result['days_for_total_flops'] = target.total_flops / achieved / SECONDS_PER_DAY
  if not result['fits']:
    result['to_fit'] = _fitting_alternative(experiment, state, device_bytes,
                                            scale=needed / memory['total'])
  return result


def compile_train_step(experiment: ExperimentConfig) -> dict:
  """Lowers and compiles the loop's own train step for the target's device
  count on (simulated) local devices; XLA's per-device memory analysis."""
  needed = experiment.plan.devices
  devices = jax.devices()
  if len(devices) < needed:
    raise ConfigError(
        f'config.plan.compile: {experiment.plan.chips} {experiment.plan.target} chips are '
        f'{needed} devices but JAX sees {len(devices)}; on CPU run with '
        f'XLA_FLAGS=--xla_force_host_platform_device_count={needed} JAX_PLATFORMS=cpu')
  trainer = trainer_lib.set_up(experiment, devices[:needed])
  with trainer.activated():
    compiled = trainer.update.lower(trainer.abstract, trainer.abstract_batch()).compile()
  analysis = compiled.memory_analysis()
  found = {name: int(getattr(analysis, f'{name}_size_in_bytes'))
           for name in ('argument', 'output', 'alias', 'temp', 'generated_code')}
  # Donated state: outputs alias the arguments and take no memory of their own.
  found['total'] = found['argument'] + found['output'] - found['alias'] + found['temp']
  return {'platform': devices[0].platform, **found}


def _gib(value: float) -> str:
  return f'{value / GIB:.2f} GiB'


def report(result: dict) -> str:
  """The plan, as a person reads it."""
  memory = result['memory_per_device']
  lines = [
      f'{result["name"]} on {result["chips"]} x {result["target"]} '
      f'({result["devices"]} devices, mesh {result["mesh"]}) at '
      f'{result["utilization"]:.1%} of {result["peak_flops_per_chip"] / 1e12:.0f} TFLOP/s per chip',
      f'  parameters      {result["params_total"] / 1e9:.2f}B '
      f'({result["params_non_embedding"] / 1e9:.2f}B non-embedding)',
      f'  FLOPs per token {result["flops_per_token"]:.3e} (forward + backward)',
      f'  tokens          {result["tokens_per_step"]:,} per step x {result["steps"]:,} steps '
      f'= {result["tokens_total"]:.3e}',
      f'  step time       {result["step_seconds"]:.3f} s -> {result["days"]:.1f} days',
  ]
  if 'total_flops' in result:
    lines.append(f'  {result["total_flops"]:.3e} FLOPs -> {result["days_for_total_flops"]:.1f} days')
  lines += [
      f'  memory per device (remat {result["remat_policy"]!r}, '
      f'{result["microbatches"]} microbatch(es)): params {_gib(memory["params"])}, '
      f'grads {_gib(memory["grads"])}, optimizer {_gib(memory["opt_state"])}, '
      f'activations ~{_gib(memory["activations"])}; total ~{_gib(memory["total"])}',
  ]
  if 'compiled' in result:
    found = result['compiled']
    lines.append(
        f'  XLA ({found["platform"]}, ahead of time): arguments {_gib(found["argument"])}, '
        f'temporaries {_gib(found["temp"])}, total {_gib(found["total"])} per device '
        f'(the estimate is {result["estimate_over_compiled"]:.2f}x)')
  lines.append(f'  {"fits" if result["fits"] else "does NOT fit"} in '
               f'{_gib(result["hbm_per_device"])} of HBM per device')
  if 'to_fit' in result:
    lines.append(f'  to fit: {result["to_fit"]}')
  return '\n'.join(lines)


def run(experiment: ExperimentConfig, workdir: str) -> dict:
  result = plan(experiment, compile_train_step(experiment) if experiment.plan.compile else None)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'plan.json'), 'w') as f:
    json.dump(result, f, indent=1)
  print(report(result))
  return result
