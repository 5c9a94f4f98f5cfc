"""Typed, self-validating experiment configuration.

A config file in `configs/` builds these frozen dataclasses and returns them as
an `ml_collections.ConfigDict`, so that every field can be overridden from the
command line (`--config.model.d_model=1024`). `load` turns the dict back into
dataclasses and checks every field, so a bad config fails with a message that
names the field before anything is traced or compiled.
"""

import dataclasses
import functools
import math
import re
from typing import Any

import jax
import ml_collections

from lamda_jax import attributes

MESH_AXES = ('data', 'fsdp', 'tensor')
# Logical names used by parameters and activations. Activations reuse the
# parameter names ('embed', 'mlp', ...); flax resolves the rules in order and a
# mesh axis is used at most once per array, so putting 'batch' first keeps
# activations batch-sharded while parameters are FSDP-sharded on 'embed'.
LOGICAL_AXES = ('batch', 'length', 'vocab', 'embed', 'heads', 'kv_heads', 'kv', 'mlp', 'layers',
                'relpos_buckets', 'attributes')
DTYPES = ('float32', 'bfloat16', 'float16')
# How a discriminator score is read (finetune.discriminator): the paper's
# P('1') vs P('0') from the LM head at the rating position, or per-attribute
# classifier heads on the final hidden state at the attribute position.
DISCRIMINATORS = ('rating_token', 'heads')
# How attention sees positions (model.position_encoding): the paper's T5
# relative bias, or rotary embeddings of queries and keys (RoPE, as Llama 2).
POSITION_ENCODINGS = ('relative_bias', 'rope')

# Registries: a config names one of these; nothing else lists the names.
ACTIVATIONS = {
    'gelu': functools.partial(jax.nn.gelu, approximate=True),  # T5.1.1's tanh form
    'gelu_exact': functools.partial(jax.nn.gelu, approximate=False),
    'relu': jax.nn.relu,
    'silu': jax.nn.silu,
    'linear': lambda x: x,
}
PROJECTION = 'projection'  # the checkpoint name of every projection's output (layers.dense)
# Projections are custom-VJP calls, not dots, to jax.checkpoint: they are kept by name.
_with_projections = functools.partial(jax.checkpoint_policies.save_from_both_policies,
                                      jax.checkpoint_policies.save_only_these_names(PROJECTION))
REMAT_POLICIES = {
    'none': None,  # no rematerialisation
    'full': jax.checkpoint_policies.nothing_saveable,  # recompute everything
    'dots': _with_projections(jax.checkpoint_policies.checkpoint_dots),  # every matmul output
    'dots_no_batch': _with_projections(  # the projections; attention is recomputed
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable),
}

# FSDP over 'fsdp' (ZeRO-3), tensor parallelism over 'tensor', data parallelism
# over 'data'. Switching strategy is editing this table, never the model.
DEFAULT_AXIS_RULES = (
    ('batch', ('data', 'fsdp')),
    ('vocab', 'tensor'),
    ('heads', 'tensor'),
    ('kv_heads', 'tensor'),  # grouped-query K/V; None replicates them when fewer than 'tensor'
    ('mlp', 'tensor'),
    ('embed', 'fsdp'),
    ('kv', None),
    ('length', None),
    ('layers', None),
    ('relpos_buckets', None),
    ('attributes', None),  # the discriminator heads' outputs: a handful, replicated
)


class ConfigError(ValueError):
  """A config field is invalid; the message starts with the field's path."""


def _fail(field: str, message: str):
  raise ConfigError(f'config.{field}: {message}')


def _check_int(field: str, value: Any, minimum: int = 1, maximum: int | None = None):
  if isinstance(value, bool) or not isinstance(value, int):
    _fail(field, f'must be an integer, got {value!r}')
  if value < minimum:
    _fail(field, f'must be >= {minimum}, got {value}')
  if maximum is not None and value > maximum:
    _fail(field, f'must be <= {maximum}, got {value}')


def _check_number(field: str, value: Any, low: float | None = None, high: float | None = None,
                  *, low_open: bool = False, high_open: bool = False):
  """A real number (bools are not) within the bounds, open or closed."""
  above = low is None or (value > low if low_open else value >= low)
  below = high is None or (value < high if high_open else value <= high)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (above and below):
    if low is not None and high is not None:
      bounds = f'in {"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    elif low is not None:
      bounds = f'{">" if low_open else ">="} {low}'
    else:
      bounds = f'{"<" if high_open else "<="} {high}'
    _fail(field, f'must be a number {bounds}, got {value!r}')


def _check_probability(field: str, value: Any):
  _check_number(field, value, 0, 1)


def _check_bool(field: str, value: Any):
  if not isinstance(value, bool):
    _fail(field, f'must be True or False, got {value!r}')


def _check_choice(field: str, value: Any, choices):
  if value not in choices:
    _fail(field, f'unknown value {value!r}; expected one of {", ".join(choices)}')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The decoder's shape. Defaults are the paper's shared choices (§3, Table 27)
  and T5.1.1 conventions where the paper is silent."""
  num_layers: int
  d_model: int
  num_heads: int
  d_ff: int
  head_dim: int = 128
  vocab_size: int = 32_000
  # Gated FFN: the product of one projection per activation. ('gelu', 'linear')
  # is the paper's gated-GELU; ('silu', 'linear') is SwiGLU; ('relu',) a plain FFN.
  activations: tuple[str, ...] = ('gelu', 'linear')
  position_encoding: str = 'relative_bias'  # one of POSITION_ENCODINGS
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  rope_max_wavelength: int = 10_000  # RoPE's longest rotation period, in positions
  # Key/value heads: 0 is one per query head (multi-head attention, the paper);
  # fewer is grouped-query attention (Llama 2), each shared by num_heads / num_kv_heads
  # query heads, and the KV cache shrinks by that factor.
  num_kv_heads: int = 0
  layer_norm_epsilon: float = 1e-6
  tie_embeddings: bool = False
  dropout_rate: float = 0.0
  dtype: str = 'bfloat16'  # compute
  param_dtype: str = 'float32'
  scan_layers: bool = True
  remat_policy: str = 'none'
  # Attention without a cache (training, evaluation) in this many blocks of
  # queries, each skipping the keys after its end, which the causal mask hides
  # (layers.causal_blocks); 1 computes the whole square.
  causal_blocks: int = 1

  def __post_init__(self):
    for name in ('num_layers', 'd_model', 'num_heads', 'd_ff', 'head_dim', 'vocab_size',
                 'relative_attention_max_distance', 'rope_max_wavelength', 'causal_blocks'):
      _check_int(f'model.{name}', getattr(self, name))
    _check_int('model.num_kv_heads', self.num_kv_heads, minimum=0, maximum=self.num_heads)
    if self.num_heads % self.kv_heads:
      _fail('model.num_kv_heads', f'must divide num_heads {self.num_heads}, got {self.num_kv_heads}')
    _check_choice('model.position_encoding', self.position_encoding, POSITION_ENCODINGS)
    if self.position_encoding == 'rope' and self.head_dim % 2:
      _fail('model.head_dim', f'must be even for rope (it rotates pairs), got {self.head_dim}')
    object.__setattr__(self, 'activations', tuple(self.activations))
    if not self.activations:
      _fail('model.activations', 'needs at least one activation')
    for activation in self.activations:
      _check_choice('model.activations', activation, ACTIVATIONS)
    buckets = self.relative_attention_num_buckets
    _check_int('model.relative_attention_num_buckets', buckets, minimum=4)
    if buckets % 2:
      _fail('model.relative_attention_num_buckets', f'must be even, got {buckets}')
    if self.relative_attention_max_distance <= buckets // 2:
      _fail('model.relative_attention_max_distance',
            f'must exceed num_buckets / 2 = {buckets // 2} (the exact-distance buckets), '
            f'got {self.relative_attention_max_distance}')
    _check_number('model.layer_norm_epsilon', self.layer_norm_epsilon, 0, 1, low_open=True,
                  high_open=True)
    _check_number('model.dropout_rate', self.dropout_rate, 0, 1, high_open=True)
    _check_bool('model.tie_embeddings', self.tie_embeddings)
    _check_bool('model.scan_layers', self.scan_layers)
    _check_choice('model.dtype', self.dtype, DTYPES)
    _check_choice('model.param_dtype', self.param_dtype, DTYPES)
    _check_choice('model.remat_policy', self.remat_policy, REMAT_POLICIES)

  @property
  def kv_heads(self) -> int:
    """Key/value heads: num_kv_heads, or num_heads when that is 0."""
    return self.num_kv_heads or self.num_heads


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh sizes; -1 fills with the devices the other axes leave over.

  `dcn_data` > 1 spreads the data axis over that many TPU slices joined by the
  data-centre network (multi-slice); fsdp and tensor stay inside a slice, on
  the faster inter-chip links.
  """
  data: int = -1
  fsdp: int = 1
  tensor: int = 1
  dcn_data: int = 1

  def __post_init__(self):
    _check_int('mesh.dcn_data', self.dcn_data)
    sizes = (self.data, self.fsdp, self.tensor)
    for axis, size in zip(MESH_AXES, sizes):
      if size != -1:
        _check_int(f'mesh.{axis}', size)
    if sizes.count(-1) > 1:
      _fail('mesh', f'at most one axis may be -1 (fill), got {dataclasses.asdict(self)}')

  def resolve(self, num_devices: int) -> dict[str, int]:
    """Axis sizes for `num_devices` devices, with -1 filled in."""
    sizes = {axis: getattr(self, axis) for axis in MESH_AXES}
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if -1 in sizes.values():
      if num_devices % fixed:
        _fail('mesh', f'{num_devices} devices cannot be split by the fixed axes {sizes} '
                      f'(product {fixed})')
      sizes = {axis: num_devices // fixed if size == -1 else size for axis, size in sizes.items()}
    elif fixed != num_devices:
      _fail('mesh', f'{sizes} needs {fixed} devices but {num_devices} are available')
    if sizes['data'] % self.dcn_data:
      _fail('mesh.dcn_data', f'{self.dcn_data} slices do not divide the data axis of '
                             f'{sizes["data"]}')
    return sizes


OPTIMIZERS = ('adafactor', 'adamw')
SCHEDULES = ('cosine', 'rsqrt', 'constant', 'wsd')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Batch geometry, optimizer and loop cadence.

  The paper trains every size on 256K-token batches and says nothing of the
  sequence length or optimizer: paper configs use 2048 x 128 = 262,144 tokens
  and Adafactor, the T5 family's default.
  """
  seq_len: int = 2048
  batch_size: int = 128  # sequences per global batch, all hosts together
  microbatches: int = 1  # gradient accumulation: the same update as the whole batch
  steps: int = 1000
  seed: int = 0
  optimizer: str = 'adafactor'
  learning_rate: float = 1e-2
  schedule: str = 'rsqrt'  # warmup, then cosine decay, inverse square root, constant, or wsd
  warmup_steps: int = 100
  # wsd (warmup-stable-decay): the peak until the last `decay_steps`, then linear decay.
  decay_steps: int = 0
  final_learning_rate_fraction: float = 0.1  # cosine and wsd decay to this fraction of the peak
  weight_decay: float = 0.0
  adam_b1: float = 0.9
  adam_b2: float = 0.95
  grad_clip_norm: float = 1.0  # 0 disables clipping
  z_loss: float = 1e-4  # PaLM's auxiliary loss keeping the softmax normaliser near 1
  log_every: int = 10  # also how often the host syncs with the device
  eval_every: int = 100  # 0 disables evaluation
  eval_batches: int = 4
  checkpoint_every: int = 100
  keep_checkpoints: int = 3
  # Peak FLOP/s of one device for MFU; 0 measures a matmul once at start.
  peak_flops_per_device: float = 0.0
  # Names of the task ids a batch's tokens carry; loss and accuracy are reported per task.
  tasks: tuple[str, ...] = ('lm',)

  def __post_init__(self):
    for name in ('seq_len', 'batch_size', 'microbatches', 'steps', 'log_every', 'eval_batches',
                 'checkpoint_every', 'keep_checkpoints'):
      _check_int(f'train.{name}', getattr(self, name))
    for name in ('seed', 'warmup_steps', 'decay_steps', 'eval_every'):
      _check_int(f'train.{name}', getattr(self, name), minimum=0)
    if self.batch_size % self.microbatches:
      _fail('train.microbatches', f'must divide batch_size {self.batch_size}, got {self.microbatches}')
    _check_choice('train.optimizer', self.optimizer, OPTIMIZERS)
    _check_choice('train.schedule', self.schedule, SCHEDULES)
    if self.schedule == 'wsd' and not 0 < self.decay_steps <= self.steps - self.warmup_steps:
      _fail('train.decay_steps', f'the wsd schedule decays over 1 to steps - warmup_steps '
                                 f'({self.steps - self.warmup_steps}) steps, got {self.decay_steps}')
    if self.schedule != 'wsd' and self.decay_steps:
      _fail('train.decay_steps', f'is read by the wsd schedule only, not {self.schedule!r}')
    _check_number('train.learning_rate', self.learning_rate, 0, low_open=True)
    for name in ('weight_decay', 'grad_clip_norm', 'z_loss', 'peak_flops_per_device'):
      _check_number(f'train.{name}', getattr(self, name), 0)
    for name in ('adam_b1', 'adam_b2', 'final_learning_rate_fraction'):
      _check_number(f'train.{name}', getattr(self, name), 0, 1)
    object.__setattr__(self, 'tasks', tuple(self.tasks))
    if not self.tasks or len(set(self.tasks)) != len(self.tasks):
      _fail('train.tasks', f'must be distinct names, at least one, got {self.tasks!r}')


SOURCE_KINDS = ('dialogs', 'documents', 'tfds')
EMBEDDED_CORPORA = ('chitchat', 'wordnet', 'fortunes', 'python_docs')


@dataclasses.dataclass(frozen=True)
class SourceConfig:
  """One source of the pre-training mixture.

  kind 'dialogs': JSONL files, one `{"turns": [{"speaker", "text"}, ...]}` per line.
  kind 'documents': JSONL files of `{"text": ...}` or plain .txt files (one document each).
  kind 'tfds': a registered TFDS dataset prepared in ArrayRecord format, by name.
  `paths` are files or globs; `embedded:<corpus>` names a corpus that installs
  offline (chitchat, wordnet, fortunes, python_docs).
  """
  kind: str
  weight: float
  paths: tuple[str, ...] = ()
  tfds_name: str = ''  # e.g. 'wiki40b/en' (kind 'tfds')
  text_field: str = 'text'  # the feature holding the text (kind 'tfds')

  def validate(self, name: str):
    field = f'data.sources.{name}'
    _check_choice(f'{field}.kind', self.kind, SOURCE_KINDS)
    _check_number(f'{field}.weight', self.weight, 0, low_open=True)
    object.__setattr__(self, 'paths', tuple(self.paths))
    if self.kind == 'tfds':
      if not self.tfds_name:
        _fail(f'{field}.tfds_name', 'is required for kind "tfds"')
    elif not self.paths:
      _fail(f'{field}.paths', f'needs at least one file or glob for kind {self.kind!r}')
    for path in self.paths:
      if path.startswith('embedded:'):
        _check_choice(f'{field}.paths', path.removeprefix('embedded:'), EMBEDDED_CORPORA)


# The paper's Infiniset shares (§3, Appendix E).
INFINISET_WEIGHTS = {'dialogs': 0.5, 'c4': 0.125, 'code': 0.125, 'wikipedia': 0.125,
                     'web_english': 0.0625, 'web_non_english': 0.0625}


def infiniset_sources(root: str) -> tuple[tuple[str, 'SourceConfig'], ...]:
  """The paper's mixture over a lab's files: `<root>/<source>/*.jsonl`, dialogs
  as dialogs and the rest as documents. Point `root` (or any source's `paths`)
  at real data; a path that matches nothing is an error before training."""
  return tuple((name, SourceConfig('dialogs' if name == 'dialogs' else 'documents', weight,
                                   (f'{root}/{name}/*.jsonl',)))
               for name, weight in INFINISET_WEIGHTS.items())


BEAM_RUNNERS = ('DirectRunner', 'PrismRunner', 'DataflowRunner', 'SparkRunner', 'FlinkRunner',
                'PortableRunner')


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The pre-training mixture. Defaults: the embedded corpora, dialogs half the
  mixture as in the paper."""
  sources: tuple[tuple[str, SourceConfig], ...] = (
      ('chitchat', SourceConfig('dialogs', 0.5, ('embedded:chitchat',))),
      ('wordnet', SourceConfig('documents', 0.2, ('embedded:wordnet',))),
      ('fortunes', SourceConfig('documents', 0.1, ('embedded:fortunes',))),
      ('python_docs', SourceConfig('documents', 0.2, ('embedded:python_docs',))),
  )
  eval_fraction: float = 0.02  # of conversations / documents, held out whole
  tfds_dir: str = ''  # where prepared datasets live; '' is <workdir>/tfds
  tokenizer: str = ''  # a SentencePiece .model; '' trains <workdir>/tokenizer.model
  tokenizer_training_chars: int = 20_000_000  # sampled across sources by weight
  # Tokenizing and packing into shards on disk: in this process ('') or on an
  # Apache Beam runner ('DirectRunner', 'DataflowRunner', 'SparkRunner', ...)
  # with its pipeline flags, e.g. ('--direct_num_workers=4',).
  beam_runner: str = ''
  beam_options: tuple[str, ...] = ()
  read_threads: int = 2  # Grain's threads reading the next batches ahead of the step
  # Rows are shuffled among this many consecutive shards of a source at a time
  # (the shards' order is shuffled too): more mixes further, and keeps more
  # shard indexes in memory (about 14 bytes a row).
  window_shards: int = 16
  read_ahead: int = 4  # batches read ahead
  # The global batch is this many equal parts, each drawn from a fixed slice of
  # every source's shards (lamda_jax/data/sampler.py): with a host count that
  # divides it, each host opens only its slice, and the batches are the same
  # on any number of hosts. A multiple of the largest host count the run will
  # see; it divides train.batch_size.
  streams: int = 1
  records_per_shard: int = 4096  # records tokenized and packed into one shard of rows

  def __post_init__(self):
    sources = self.sources.items() if hasattr(self.sources, 'items') else self.sources
    sources = tuple((name, source if isinstance(source, SourceConfig) else
                     _section(SourceConfig, f'data.sources.{name}.', source))
                    for name, source in sources)
    object.__setattr__(self, 'sources', sources)
    if not sources:
      _fail('data.sources', 'needs at least one source')
    for name, source in sources:
      source.validate(name)
    _check_number('data.eval_fraction', self.eval_fraction, 0, 1, low_open=True, high_open=True)
    _check_int('data.tokenizer_training_chars', self.tokenizer_training_chars)
    if self.beam_runner:
      _check_choice('data.beam_runner', self.beam_runner, BEAM_RUNNERS)
    object.__setattr__(self, 'beam_options', tuple(self.beam_options))
    for option in self.beam_options:
      if not (isinstance(option, str) and option.startswith('--')):
        _fail('data.beam_options', f'each must be a "--flag=value" string, got {option!r}')
    if self.beam_options and not self.beam_runner:
      _fail('data.beam_options', 'given without data.beam_runner')
    _check_int('data.read_threads', self.read_threads)
    _check_int('data.read_ahead', self.read_ahead)
    _check_int('data.window_shards', self.window_shards)
    _check_int('data.streams', self.streams)
    _check_int('data.records_per_shard', self.records_per_shard)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """`--mode finetune`: the same loop on the paper's generator and discriminator tasks.

  `labels`: label JSONL files or globs (lamda_jax/finetune/labels.py), or
  `embedded:chitchat_weak`, the weak-label bootstrap (lamda_jax/finetune/weak_labels.py). `init_from`: the
  workdir of a pre-training run with the same model and optimizer; its latest
  parameters are the start, and its optimizer state too when
  `keep_optimizer_state` (moments and step counters alike, so the learning-rate
  schedule continues where that run stopped); otherwise the optimizer starts
  fresh. `generator_data`: JSONL files of {"context", "response",
  "conversation"?} whose every response trains the generator without labels:
  `--mode filter`'s `filtered.jsonl` (the paper's step: the generator learns
  from the responses the discriminators kept). Task weights:
  the generator, the discriminators (shared equally by the rated attributes),
  and pre-training data kept in the mixture against forgetting.
  `discriminator`: one of DISCRIMINATORS; 'heads' adds the classifier heads to
  the model (their parameters are fresh when `init_from` has none), and every
  mode that reads the run must say 'heads' too.
  """
  labels: tuple[str, ...] = ()
  discriminator: str = 'rating_token'
  generator_data: tuple[str, ...] = ()
  init_from: str = ''
  keep_optimizer_state: bool = False
  generator_weight: float = 0.5
  discriminator_weight: float = 0.5
  pretrain_weight: float = 0.0
  eval_fraction: float = 0.1
  # Stage two (§6.2): research transcripts (JSONL of {"fact"?, "transcript": [turns]})
  # or `embedded:research`, dialogs the toolset makes (`research_per_kind` of each kind).
  research: tuple[str, ...] = ()
  research_weight: float = 0.0
  research_per_kind: int = 2000

  def __post_init__(self):
    object.__setattr__(self, 'labels', tuple(self.labels))
    object.__setattr__(self, 'generator_data', tuple(self.generator_data))
    for path in self.labels:
      if path.startswith('embedded:'):
        _check_choice('finetune.labels', path.removeprefix('embedded:'), ('chitchat_weak',))
    _check_bool('finetune.keep_optimizer_state', self.keep_optimizer_state)
    _check_choice('finetune.discriminator', self.discriminator, DISCRIMINATORS)
    object.__setattr__(self, 'research', tuple(self.research))
    for path in self.research:
      if path.startswith('embedded:'):
        _check_choice('finetune.research', path.removeprefix('embedded:'), ('research',))
    _check_int('finetune.research_per_kind', self.research_per_kind)
    if self.research_weight and not self.research:
      _fail('finetune.research', 'is needed when research_weight > 0')
    weights = ('generator_weight', 'discriminator_weight', 'pretrain_weight', 'research_weight')
    for name in weights:
      _check_number(f'finetune.{name}', getattr(self, name), 0)
    if not any(getattr(self, name) for name in weights):
      _fail('finetune', 'at least one task weight must be positive')
    _check_number('finetune.eval_fraction', self.eval_fraction, 0, 1, low_open=True,
                  high_open=True)


@dataclasses.dataclass(frozen=True)
class FilterConfig:
  """`--mode filter`: keep generated responses that the discriminators of a
  fine-tuned run (`from_run`, its workdir) judge good enough (§6.1: 2.5M -> 800K).

  `candidates`: JSONL of {"context": [turns], "response": {"speaker", "text"}},
  or `--mode generate`'s records as they are (each candidate by `reply_speaker`).
  Kept ones go to `filtered.jsonl` as {"context", "response", "conversation"?,
  "origin", "scores"}: `finetune.generator_data` as it is.
  A candidate is kept when P(SENSIBLE) >= sensible_min, P(SPECIFIC) >=
  specific_min, P(INTERESTING) >= interesting_min and P(UNSAFE) <= unsafe_max.
  """
  candidates: str = ''
  from_run: str = ''
  sensible_min: float = 0.5
  specific_min: float = 0.0
  interesting_min: float = 0.0
  unsafe_max: float = 0.5
  batch_size: int = 64

  def __post_init__(self):
    for attribute in attributes.TABLE:
      _check_probability(f'filter.{attribute.filter_field}', getattr(self, attribute.filter_field))
    _check_int('filter.batch_size', self.batch_size)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """`--mode eval`: the discriminators of a fine-tuned run (`from_run`, its
  workdir) on labelled responses: `labels` files, or when empty the held-out
  split of `finetune.labels`. Then the run answers the first `sampled_contexts`
  of those contexts by sample-and-rank (config.decode; 0 skips this) and its
  discriminators judge the replies: SSI and safety rates, chosen vs all; the
  chosen replies also go to a rating sheet for people (`rating_sheet.csv` /
  `.jsonl`). `judge_run`: another fine-tuned run whose discriminators also
  judge those replies (a bigger or separately trained judge). `ratings`:
  filled sheets that `--mode rate_report` reads."""
  from_run: str = ''
  judge_run: str = ''
  labels: tuple[str, ...] = ()
  ratings: tuple[str, ...] = ()
  calibration_bins: int = 10
  sampled_contexts: int = 32

  def __post_init__(self):
    object.__setattr__(self, 'labels', tuple(self.labels))
    object.__setattr__(self, 'ratings', tuple(self.ratings))
    _check_int('eval.calibration_bins', self.calibration_bins)
    _check_int('eval.sampled_contexts', self.sampled_contexts, minimum=0)


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """Sample-and-rank (§3, §6.1) for `--mode chat`, `generate`, `serve` and eval.

  `from_run`: the workdir whose latest parameters and tokenizer answer.
  Sampling: `num_candidates` per context, top-k (0 = whole vocabulary),
  `temperature` (0 = greedy), top-p (1 = off), reproducible from `seed`.
  `ranking`: 'lamda' drops candidates whose safety score P(UNSAFE = 0) is below
  `safety_threshold` and ranks the rest by 3 P(SENSIBLE) + P(SPECIFIC) +
  P(INTERESTING), answering `fallback_reply` when none is safe; 'pt' (Meena)
  picks the highest log-likelihood per token. Turns are rendered with
  `user_speaker` / `model_speaker` as the training dialogs name speakers
  (chitchat: A, B). `contexts`: `--mode generate`'s input JSONL.
  """
  from_run: str = ''
  num_candidates: int = 16
  max_new_tokens: int = 64
  top_k: int = 40
  temperature: float = 1.0
  top_p: float = 1.0
  seed: int = 0
  ranking: str = 'lamda'
  safety_threshold: float = 0.5
  fallback_reply: str = "Sorry, I'd rather talk about something else."
  user_speaker: str = 'A'
  model_speaker: str = 'B'
  contexts: str = ''

  def __post_init__(self):
    _check_int('decode.num_candidates', self.num_candidates)
    _check_int('decode.max_new_tokens', self.max_new_tokens)
    _check_int('decode.top_k', self.top_k, minimum=0)
    _check_int('decode.seed', self.seed, minimum=0)
    _check_number('decode.temperature', self.temperature, 0)
    _check_number('decode.top_p', self.top_p, 0, 1, low_open=True)  # 1 turns nucleus sampling off
    _check_choice('decode.ranking', self.ranking, ('lamda', 'pt'))
    _check_probability('decode.safety_threshold', self.safety_threshold)
    for name in ('fallback_reply', 'user_speaker', 'model_speaker'):
      if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
        _fail(f'decode.{name}', 'must be a non-empty string')


@dataclasses.dataclass(frozen=True)
class ServeConfig:
  """`--mode serve`: POST /v1/respond on `host`:`port` (loopback unless changed).

  Requests larger than `max_request_bytes` or `max_header_bytes`, with more
  than `max_turns` turns or a turn longer than `max_turn_chars` are refused
  with a 4xx. At most `max_connections` clients are connected at once; one
  that sends or reads nothing for `client_timeout_s` is dropped, so a slow
  client never holds the others (`threads` answer in parallel). Requests that
  wait for the model are answered together, up to `max_batch` dialogs per
  sample-and-rank call, the first waiting at most `batch_wait_ms` for others;
  every call decodes exactly `max_batch` dialogs (the rest padding), so an
  answer is the same alone or batched. At most `max_queue` requests wait for
  the model; beyond that a request gets 503 with Retry-After. SIGTERM finishes
  the requests in flight (up to `drain_timeout_s`), refuses new ones, exits 0.
  """
  host: str = '127.0.0.1'
  port: int = 8080
  max_request_bytes: int = 65536
  max_header_bytes: int = 16384
  max_turns: int = 64
  max_turn_chars: int = 2000
  threads: int = 8
  max_connections: int = 64
  max_queue: int = 16
  client_timeout_s: int = 30
  drain_timeout_s: int = 60
  max_batch: int = 4
  batch_wait_ms: int = 5

  def __post_init__(self):
    _check_int('serve.port', self.port, minimum=0, maximum=65535)
    _check_int('serve.batch_wait_ms', self.batch_wait_ms, minimum=0)
    for name in ('max_request_bytes', 'max_header_bytes', 'max_turns', 'max_turn_chars',
                 'threads', 'max_connections', 'client_timeout_s', 'drain_timeout_s',
                 'max_batch'):
      _check_int(f'serve.{name}', getattr(self, name))
    _check_int('serve.max_queue', self.max_queue, minimum=0)


EMBEDDED_COLLECTIONS = ('wordnet', 'python_docs')


@dataclasses.dataclass(frozen=True)
class ToolsetConfig:
  """The toolset (§6.2): calculator, translator, information retrieval.

  `dictionary_dir`: FreeDict dictionaries (`freedict-<src>-<dst>.{index,dict.dz}`).
  `collections`: snippet JSONL files or globs ({"id", "url", "title", "text"}),
  or `embedded:wordnet` / `embedded:python_docs`; indexed once into
  `index_dir` ('' is <workdir>/toolset_index). Each IR call returns
  `snippets_per_call` snippets; asking again in one conversation returns the
  next ones. Queries longer than `max_query_chars` get nothing.
  """
  dictionary_dir: str = '/usr/share/dictd'
  collections: tuple[str, ...] = ('embedded:wordnet', 'embedded:python_docs')
  index_dir: str = ''
  snippets_per_call: int = 1
  max_query_chars: int = 500

  def __post_init__(self):
    object.__setattr__(self, 'collections', tuple(self.collections))
    if not self.collections:
      _fail('toolset.collections', 'needs at least one collection')
    for path in self.collections:
      if path.startswith('embedded:'):
        _check_choice('toolset.collections', path.removeprefix('embedded:'), EMBEDDED_COLLECTIONS)
    for name in ('dictionary_dir', 'index_dir'):
      if not isinstance(getattr(self, name), str):
        _fail(f'toolset.{name}', f'must be a path, got {getattr(self, name)!r}')
    _check_int('toolset.snippets_per_call', self.snippets_per_call)
    _check_int('toolset.max_query_chars', self.max_query_chars)


@dataclasses.dataclass(frozen=True)
class ResearchConfig:
  """The LaMDA-Base -> LaMDA-Research loop (§6.2) at inference.

  `enabled` switches chat, generate and serve from sample-and-rank alone to
  the loop: the sample-and-rank reply is the draft, then the same run writes
  research lines (`TS, <query>` or `User, <reply>`), at most `max_steps`
  toolset calls, each line at most `max_line_tokens` tokens, sampled at
  `temperature` (0 = greedy) with `decode.top_k` / `top_p`; results are cut at
  `max_result_chars`. `questions`: `--mode eval_grounded`'s held-out questions
  (JSONL of {"context", "answer", "alternatives"?, "kind"?, "phrasing"?}, or research
  transcripts), or `embedded:research`, the held-out split of the dialogs the
  toolset makes for fine-tuning, or `embedded:research_new_phrasings`, the
  same facts asked in phrasings no training dialog uses; at most
  `max_questions` of them.
  """
  enabled: bool = False
  max_steps: int = 4
  max_line_tokens: int = 32
  temperature: float = 0.0
  max_result_chars: int = 400
  questions: str = 'embedded:research'
  max_questions: int = 200

  def __post_init__(self):
    _check_bool('research.enabled', self.enabled)
    _check_int('research.max_steps', self.max_steps)
    _check_int('research.max_line_tokens', self.max_line_tokens, minimum=2)
    _check_number('research.temperature', self.temperature, 0)
    _check_int('research.max_result_chars', self.max_result_chars)
    _check_int('research.max_questions', self.max_questions)
    if not isinstance(self.questions, str) or not self.questions:
      _fail('research.questions', f'must be a JSONL path or embedded:research, '
                                  f'got {self.questions!r}')
    if self.questions.startswith('embedded:'):
      _check_choice('research.questions', self.questions.removeprefix('embedded:'),
                    ('research', 'research_new_phrasings'))


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator chip, as a plan sees it: bf16 peak, HBM, JAX devices per chip."""
  peak_flops: float  # bf16 FLOP/s of the whole chip
  hbm_bytes: float  # of the whole chip, split evenly over its JAX devices
  devices_per_chip: int  # TensorCores JAX sees as separate devices (v3: 2; megacore: 1)
  source: str


GIB = 2**30
# Cloud TPU system-architecture pages (cloud.google.com/tpu/docs/system-architecture-tpu-vm
# and the v4 / v5e / v5p pages); v3's 123 TFLOP/s is also the LaMDA paper's (§10).
TPU_TARGETS = {
    'tpu_v3': Chip(123e12, 32 * GIB, 2, 'Cloud TPU v3: 123 TFLOP/s bf16, 2 cores x 16 GiB HBM'),
    'tpu_v4': Chip(275e12, 32 * GIB, 1, 'Cloud TPU v4: 275 TFLOP/s bf16, 32 GiB HBM, megacore'),
    'tpu_v5e': Chip(197e12, 16e9, 1, 'Cloud TPU v5e: 197 TFLOP/s bf16, 16 GB HBM'),
    'tpu_v5p': Chip(459e12, 95e9, 1, 'Cloud TPU v5p: 459 TFLOP/s bf16, 95 GB HBM, megacore'),
}


@dataclasses.dataclass(frozen=True)
class PlanConfig:
  """`--mode plan`: what a run of this config costs on `chips` chips of `target`.

  `utilization` is the fraction of peak FLOP/s the run achieves (the paper
  reports 56.5% for 137B on TPU v3). `total_flops` > 0 also gives the days a
  quoted compute budget takes (the paper's 3.55e23 for 137B), next to the
  days of `train.steps` x tokens per step. `compile` lowers and compiles the
  real train step for the target's device count, ahead of time, on simulated
  CPU devices, and reports XLA's per-device memory next to the estimate.
  """
  target: str = 'tpu_v4'
  chips: int = 8
  utilization: float = 0.5
  total_flops: float = 0.0
  compile: bool = False

  def __post_init__(self):
    _check_choice('plan.target', self.target, TPU_TARGETS)
    _check_int('plan.chips', self.chips)
    _check_number('plan.utilization', self.utilization, 0, 1, low_open=True)
    _check_number('plan.total_flops', self.total_flops, 0)
    _check_bool('plan.compile', self.compile)

  @property
  def chip(self) -> Chip:
    return TPU_TARGETS[self.target]

  @property
  def devices(self) -> int:
    return self.chips * self.chip.devices_per_chip


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """Multi-host setup for `jax.distributed.initialize`; empty on a single host.

  On Cloud TPU all three may stay empty/-1: JAX discovers them itself when
  `enabled` is set.
  """
  enabled: bool = False
  coordinator_address: str = ''  # host:port of process 0
  num_processes: int = -1
  process_id: int = -1

  def __post_init__(self):
    _check_bool('distributed.enabled', self.enabled)
    if not isinstance(self.coordinator_address, str) or (
        self.coordinator_address and not self.coordinator_address.rpartition(':')[2].isdigit()):
      _fail('distributed.coordinator_address',
            f'must be "" or "host:port", got {self.coordinator_address!r}')
    for name in ('num_processes', 'process_id'):
      _check_int(f'distributed.{name}', getattr(self, name), minimum=-1)
    if self.num_processes == 0:
      _fail('distributed.num_processes', 'must be -1 (discovered) or >= 1, got 0')
    if self.num_processes > 0 and self.process_id >= self.num_processes:
      _fail('distributed.process_id', f'must be < num_processes {self.num_processes}, '
                                      f'got {self.process_id}')


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  name: str
  model: ModelConfig
  mesh: MeshConfig = MeshConfig()
  train: TrainConfig = TrainConfig()
  data: DataConfig = DataConfig()
  finetune: FinetuneConfig = FinetuneConfig()
  filter: FilterConfig = FilterConfig()
  eval: EvalConfig = EvalConfig()
  decode: DecodeConfig = DecodeConfig()
  serve: ServeConfig = ServeConfig()
  toolset: ToolsetConfig = ToolsetConfig()
  research: ResearchConfig = ResearchConfig()
  plan: PlanConfig = PlanConfig()
  distributed: DistributedConfig = DistributedConfig()
  logical_axis_rules: tuple[tuple[str, Any], ...] = DEFAULT_AXIS_RULES

  def __post_init__(self):
    rules = tuple((logical, tuple(mesh) if isinstance(mesh, list) else mesh)
                  for logical, mesh in self.logical_axis_rules)
    object.__setattr__(self, 'logical_axis_rules', rules)
    for index, (logical, mesh_axes) in enumerate(rules):
      field = f'logical_axis_rules[{index}]'
      _check_choice(field, logical, LOGICAL_AXES)
      for mesh_axis in (mesh_axes if isinstance(mesh_axes, tuple) else (mesh_axes,)):
        if mesh_axis is not None:
          _check_choice(field, mesh_axis, MESH_AXES)
    for field in PATH_FIELDS:
      section, name = field.split('.')
      value = getattr(getattr(self, section), name)
      for path in (value,) if isinstance(value, str) else value:
        check_local_path(f'config.{field}', path)
    for name, source in self.data.sources:
      for path in source.paths:
        check_local_path(f'config.data.sources.{name}.paths', path)
    if self.train.batch_size % self.data.streams:
      _fail('data.streams', f'{self.data.streams} does not divide train.batch_size '
                            f'{self.train.batch_size}')
    unruled = [axis for axis in LOGICAL_AXES if axis not in {rule[0] for rule in rules}]
    if unruled:  # flax would replicate them silently
      _fail('logical_axis_rules', f'no rule for {", ".join(unruled)}; add one, e.g. '
                                  f'{[rule for rule in DEFAULT_AXIS_RULES if rule[0] in unruled]}')

  def with_fields(self, **sections) -> 'ExperimentConfig':
    """A copy with fields of named sections replaced, each section validated
    again: `experiment.with_fields(finetune={'discriminator': 'heads'})`."""
    return dataclasses.replace(self, **{
        name: dataclasses.replace(getattr(self, name), **fields)
        for name, fields in sections.items()})

  def to_config_dict(self) -> ml_collections.ConfigDict:
    config = dataclasses.asdict(self)
    # Sources keyed by name, so `--config.data.sources.chitchat.weight=0.7` works.
    config['data']['sources'] = {name: dataclasses.asdict(source)
                                 for name, source in self.data.sources}
    return ml_collections.ConfigDict(config)


# Config fields that name files or folders (the workdir flag is one more).
# They are opened with Python's `open`, on every host: a bucket is read and
# written through a mount (Cloud Storage FUSE), never by URL.
PATH_FIELDS = ('data.tfds_dir', 'data.tokenizer', 'finetune.labels', 'finetune.generator_data',
               'finetune.init_from', 'finetune.research', 'filter.candidates', 'filter.from_run',
               'eval.from_run', 'eval.judge_run', 'eval.labels', 'eval.ratings',
               'decode.from_run', 'decode.contexts', 'toolset.dictionary_dir',
               'toolset.collections', 'toolset.index_dir', 'research.questions')


def check_local_path(field: str, path: str):
  """A URL where a file system path belongs is an error that says what to do
  (`field` as the user wrote it: `config.data.tfds_dir`, `--workdir`)."""
  scheme = re.match(r'([a-z][a-z0-9+.-]*)://', path)
  if scheme:
    bucket = path[len(scheme.group(0)):].split('/')[0]
    raise ConfigError(f'{field}: {path!r} is a {scheme.group(1)}:// URL; paths are opened as '
                      f'files on every host, so mount the bucket (for Cloud Storage: gcsfuse '
                      f'{bucket} /gcs/{bucket}) and give the path under the mount')


def _section(cls, prefix: str, values: Any):
  values = dict(values)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    _fail(prefix + unknown[0], f'unknown field; {cls.__name__} has {", ".join(sorted(known))}')
  missing = sorted(f.name for f in dataclasses.fields(cls)
                   if f.name not in values and f.default is dataclasses.MISSING)
  if missing:
    _fail(prefix + missing[0], 'is required')
  return cls(**values)


def load(config: ml_collections.ConfigDict | dict) -> ExperimentConfig:
  """Validates a config dict (e.g. after command-line overrides) into dataclasses."""
  config = dict(config)
  for field in dataclasses.fields(ExperimentConfig):  # every section is a dataclass of its own
    if dataclasses.is_dataclass(field.type):
      config[field.name] = _section(field.type, f'{field.name}.', config.get(field.name, {}))
  config['logical_axis_rules'] = tuple(tuple(rule) for rule in config.get(
      'logical_axis_rules', DEFAULT_AXIS_RULES))
  return _section(ExperimentConfig, '', config)
