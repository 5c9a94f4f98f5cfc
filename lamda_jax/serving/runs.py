"""A finished run, opened once for inference: what chat, generate, serve,
filter and eval read.

The parameters' shardings come from their abstract shapes and logical axis
names (no optimizer is built, none of its state is read), and they are read
straight into `decoding.inference_params`'s dtypes: no float32 copy of bf16
weights is ever made. The tokenizer is the run's own; reading a run never
trains one.
"""

import contextlib
import dataclasses
import functools

import flax.linen as nn
import jax
from jax.sharding import Mesh

from lamda_jax.config import ConfigError, ExperimentConfig
from lamda_jax.data import pipeline
from lamda_jax.model import decoder, stats
from lamda_jax.model.decoder import Decoder
from lamda_jax.serving import decoding
from lamda_jax.training import partitioning
from lamda_jax.training.checkpointing import Checkpointer


@dataclasses.dataclass(frozen=True)
class Run:
  experiment: ExperimentConfig
  directory: str
  params: dict  # the latest checkpoint's, in inference dtypes, sharded on `mesh`
  tokenizer: object  # sentencepiece.SentencePieceProcessor
  model: Decoder
  mesh: Mesh

  @contextlib.contextmanager
  def activated(self):
    """The run's mesh and sharding rules, for tracing and calling its model."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.experiment.logical_axis_rules):
      yield self


def inference_shapes(experiment: ExperimentConfig, mesh: Mesh):
  """The parameters as ShapeDtypeStructs in inference dtypes, with their shardings."""
  boxed = stats.abstract_params(decoder.for_experiment(experiment))
  unboxed, specs = nn.unbox(boxed), nn.get_partition_spec(boxed)
  rules = experiment.logical_axis_rules
  partitioning.check_divisible(unboxed, specs, mesh, rules)
  shardings = partitioning.logical_to_sharding(specs, mesh, rules)
  cast = jax.eval_shape(functools.partial(decoding.inference_params, cfg=experiment.model),
                        unboxed)
  return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(
      leaf.shape, leaf.dtype, sharding=sharding), cast, shardings)


def read_params(experiment: ExperimentConfig, run_dir: str, field: str, mesh: Mesh):
  """The parameters of the newest readable checkpoint in `run_dir`, onto `mesh`."""
  checkpointer = Checkpointer(run_dir, experiment.train, read_only=True)
  shapes = inference_shapes(experiment, mesh)
  check_discriminator(experiment, checkpointer.saved_param_names(), run_dir, field)
  params = checkpointer.restore_latest_params(shapes)
  if params is None:
    raise FileNotFoundError(f'config.{field}: no readable checkpoint in {run_dir}/checkpoints')
  return params


def check_discriminator(experiment: ExperimentConfig, saved: set[str] | None, run_dir: str,
                        field: str):
  """A run fine-tuned with discriminator heads is read with them, and only such a run."""
  has_heads = saved is not None and decoder.HEADS_NAME in saved
  wants_heads = experiment.finetune.discriminator == 'heads'
  if saved is not None and has_heads != wants_heads:
    raise ConfigError(
        f'config.{field}: {run_dir} was ' + ('' if has_heads else 'not ') +
        "fine-tuned with discriminator heads; read it with config.finetune.discriminator="
        f"'{'heads' if has_heads else 'rating_token'}'")


def open_run(experiment: ExperimentConfig, run_dir: str, field: str) -> Run:
  """The run in `run_dir` (named by config `field` in errors) on a mesh of this process."""
  if not run_dir:
    raise FileNotFoundError(f'config.{field}: the run to read is required')
  tokenizer = pipeline.run_tokenizer(experiment, run_dir, field)
  mesh = partitioning.create_mesh(experiment)
  return Run(experiment, run_dir, read_params(experiment, run_dir, field, mesh), tokenizer,
             decoder.for_experiment(experiment), mesh)
