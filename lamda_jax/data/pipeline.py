"""Pre-training data: a weighted mixture of sources, tokenized, packed, sampled by step.

Each configured source is prepared once by the TFDS builders (embedded corpora
are first exported to the same JSONL schemas), tokenized with the run's
SentencePiece model, cut into rows of `train.seq_len` and packed; the mixture
sampler then makes every batch a pure function of the step. Dialogs become
text in the one dialog format (`lamda_jax/data/dialog.py`); every example ends with
EOS and weighs every token in the loss.
"""

import contextlib
import dataclasses
import filecmp
import hashlib
import itertools
import os
import shutil

from absl import logging
import jax
from jax.experimental import multihost_utils

from lamda_jax import console
from lamda_jax.config import ConfigError, ExperimentConfig
from lamda_jax.data import builders, corpora, dialog, packed, packing
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.data.sampler import MixtureSampler


@dataclasses.dataclass
class Datasets:
  train: MixtureSampler
  eval: MixtureSampler
  packing_efficiency: float
  bad_records: dict = dataclasses.field(default_factory=dict)  # source -> reason -> count


def process_zero_first(name: str, work):
  """Runs `work` on process 0 while the others wait, then everywhere (it is cached).

  Process 0 reaches the barrier even if `work` fails, so no host hangs: the
  same error then comes from the final call on every process.
  """
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      try:
        work()
      except Exception:  # pylint: disable=broad-except  # re-raised below, on every process
        pass
    multihost_utils.sync_global_devices(name)
  return work()


def open_sources(experiment: ExperimentConfig, workdir: str) -> dict[str, builders.Source]:
  """Every configured source, prepared. Missing files are an error naming the
  field; an embedded corpus whose Debian package is absent is left out with a
  warning, so a non-Debian machine still runs on what it has."""
  data = experiment.data
  tfds_dir = data.tfds_dir or os.path.join(workdir, 'tfds')
  opened = {}
  for name, source in data.sources:
    paths = []
    try:
      for pattern in source.paths:
        if pattern.startswith('embedded:'):
          corpus = pattern.removeprefix('embedded:')
          paths.append(process_zero_first(f'export {corpus}', lambda c=corpus: corpora.export(
              c, os.path.join(workdir, 'corpora'))))
        else:
          paths.extend(builders.expand_paths(f'data.sources.{name}.paths', [pattern]))
    except corpora.CorpusUnavailable as error:
      logging.warning('Data source %s left out of the mixture: %s', name, error)
      continue
    opened[name] = process_zero_first(f'prepare {name}', lambda n=name, s=source, p=paths: (
        builders.prepare(n, s, p, tfds_dir, data.eval_fraction, data.beam_runner,
                         data.beam_options)))
  if not opened:
    raise ValueError('config.data.sources: no source is available')
  return opened


def source_texts(source: builders.Source, split: str, start: int = 0, stop: int | None = None):
  """(origin, text, turns or None) for records [start, stop) of a split."""
  for origin, record in source.records(split, start, stop):
    if 'texts' in record:
      turns = [dialog.Turn(s, t) for s, t in zip(record['speakers'], record['texts'])]
      yield origin, dialog.render(turns), turns
    else:
      yield origin, record['text'], None


def tokenizer_path(experiment: ExperimentConfig, workdir: str) -> str:
  return experiment.data.tokenizer or os.path.join(workdir, 'tokenizer.model')


def tokenizer_for(experiment: ExperimentConfig, workdir: str, sources=None):
  """The configured tokenizer, or one trained once into the workdir on a sample
  of the train splits, each source contributing by its weight."""
  path = tokenizer_path(experiment, workdir)
  if experiment.data.tokenizer:
    return tokenizer_lib.load(path)

  def sample():
    weights = dict(experiment.data.sources)
    total = sum(weights[name].weight for name in sources)
    for name, source in sources.items():
      budget = experiment.data.tokenizer_training_chars * weights[name].weight / total
      for _, text, _ in source_texts(source, 'train'):
        yield text
        budget -= len(text)
        if budget <= 0:
          break

  if sources is None and not os.path.exists(path):
    sources = open_sources(experiment, workdir)
  def load_or_train():
    vocab_size = experiment.model.vocab_size
    training = console.phase(f'Training the tokenizer ({vocab_size} pieces)')
    with contextlib.nullcontext() if os.path.exists(path) else training:
      return tokenizer_lib.load_or_train(path, sample(), vocab_size)

  return process_zero_first('tokenizer', load_or_train)


def run_tokenizer(experiment: ExperimentConfig, run_dir: str, field: str):
  """The tokenizer another run was trained with; reading a run never trains one."""
  path = tokenizer_path(experiment, run_dir)
  if not os.path.exists(path):
    raise FileNotFoundError(f'config.{field}: no tokenizer at {path}')
  return tokenizer_lib.load(path)


def inherit_tokenizer(experiment: ExperimentConfig, workdir: str, run_dir: str, field: str):
  """A run starting from another run's parameters must read text as it did:
  that run's tokenizer is copied into this workdir, or must equal the one there."""
  if experiment.data.tokenizer:
    return  # both runs name the same file
  source, target = tokenizer_path(experiment, run_dir), tokenizer_path(experiment, workdir)
  run_tokenizer(experiment, run_dir, field)  # exists and loads
  if os.path.exists(target):
    if not filecmp.cmp(source, target, shallow=False):
      raise ConfigError(f'config.{field}: {target} differs from the tokenizer of {run_dir}, '
                        'whose parameters this run starts from')
    return

  def copy():
    if not os.path.exists(target):
      os.makedirs(workdir, exist_ok=True)
      for suffix in ('.model', '.vocab'):
        origin = source.removesuffix('.model') + suffix
        if os.path.exists(origin):
          shutil.copyfile(origin, target.removesuffix('.model') + suffix + '.tmp')
          os.replace(target.removesuffix('.model') + suffix + '.tmp',
                     target.removesuffix('.model') + suffix)

  process_zero_first('inherit tokenizer', copy)


def tokenizer_report(experiment: ExperimentConfig, workdir: str, records_per_source=200) -> dict:
  """`--mode tokenizer`: the run's tokenizer, trained if needed, checked on held-out text."""
  sources = open_sources(experiment, workdir)
  tokenizer = tokenizer_for(experiment, workdir, sources)
  texts = [text for source in sources.values() for _, text, _ in
           itertools.islice(source_texts(source, 'validation'), records_per_source)]
  encoded = tokenizer.encode(texts)
  return {
      'mode': 'tokenizer', 'path': tokenizer_path(experiment, workdir),
      'vocab_size': tokenizer.vocab_size(), 'held_out_texts': len(texts),
      'chars_per_token': sum(map(len, texts)) / max(sum(map(len, encoded)), 1),
      'unknown_tokens': sum(ids.count(tokenizer_lib.UNK_ID) for ids in encoded),
      'round_trip_exact': all(tokenizer.decode(ids) == text for ids, text in zip(encoded, texts)),
      'control_words': {word: tokenizer.encode(word, out_type=str)
                        for word in tokenizer_lib.CONTROL_WORDS + ('0', '1')},
  }


def examples(source: builders.Source, split: str, tokenizer, seq_len: int, bad,
             start: int = 0, stop: int | None = None):
  """Tokenized examples of records [start, stop) of a split, cut into pieces
  of at most seq_len tokens.

  A dialog with a turn that cannot fit in a row even alone is reported
  (file:line) and left out: no context window could hold that turn.
  """
  records = list(source_texts(source, split, start, stop))
  encoded = tokenizer.encode([text for _, text, _ in records], num_threads=os.cpu_count() or 1)
  for (origin, _, turns), tokens in zip(records, encoded):
    if turns:
      too_long = [i for i, turn in enumerate(turns)
                  if len(dialog.render_turn(turn).encode('utf-8')) >= seq_len and
                  len(tokenizer.encode(dialog.render_turn(turn))) >= seq_len]
      if too_long:
        bad.add(f'{origin} (turn {too_long[0]})', f'a turn is longer than seq_len {seq_len}')
        continue
    tokens = tokens + [tokenizer_lib.EOS_ID]
    for start_token in range(0, len(tokens), seq_len):
      piece = tuple(tokens[start_token:start_token + seq_len])
      yield packing.Example(piece, (1.0,) * len(piece))


@dataclasses.dataclass(frozen=True)
class ShardJob:
  """One shard of one split's packed rows: what a worker needs to write it."""
  source: builders.Source
  split: str
  start: int  # records [start, stop) of the split
  stop: int
  stem: str
  tokenizer_path: str
  seq_len: int

  def __call__(self) -> str:
    tokenizer = tokenizer_lib.load(self.tokenizer_path)
    bad = builders.BadRecords()
    rows = packing.pack_rows(examples(self.source, self.split, tokenizer, self.seq_len, bad,
                                      self.start, self.stop), self.seq_len)
    packed.write_shard(self.stem, rows, bad)
    return self.stem


def shard_jobs(source: builders.Source, split: str, tokenizer_path: str, seq_len: int,
               workdir: str, records_per_shard: int) -> list[ShardJob]:
  """The shards of a split's packed rows, in order, under a folder named by the
  prepared data, the split, seq_len, the shard size and the tokenizer model: a
  changed tokenizer or seq_len packs anew, a restart reads what is there."""
  with open(tokenizer_path, 'rb') as f:
    model = f.read()
  key = hashlib.sha256(f'{source.identity}:{split}:{seq_len}:{records_per_shard}:'.encode() +
                       model).hexdigest()[:16]
  folder = os.path.join(workdir, 'packed', f'{source.name}-{split}-{key}')
  records = source.size(split)
  shards = -(-records // records_per_shard)
  return [ShardJob(source, split, start, min(start + records_per_shard, records),
                   os.path.join(folder, f'{index:05d}-of-{shards:05d}'), tokenizer_path, seq_len)
          for index, start in enumerate(range(0, records, records_per_shard))]


def write_shards(jobs: list[ShardJob], beam_runner: str = '', beam_options=()):
  """Writes the shards not yet written: in this process, or on Apache Beam
  (`beam_runner` 'DirectRunner' here and in tests; 'DataflowRunner',
  'SparkRunner' or 'FlinkRunner' for a lab's corpus). Both write the same
  files. With several hosts, each writes every process_count-th shard."""
  todo = [job for job in jobs if not packed.is_written(job.stem)]
  todo = todo[jax.process_index()::jax.process_count()]
  if todo and beam_runner:
    import apache_beam as beam  # pylint: disable=import-outside-toplevel  # only when asked for
    options = beam.options.pipeline_options.PipelineOptions(list(beam_options))
    with console.library_output(), beam.Pipeline(runner=beam_runner, options=options) as run:
      _ = run | beam.Create(todo) | beam.Map(lambda job: job())
  else:
    for job in todo:
      job()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('packed shards')
  missing = [job.stem for job in jobs if not packed.is_written(job.stem)]
  if missing:
    raise RuntimeError(f'packed shards were not written: {", ".join(missing[:3])}')


def packed_split(experiment: ExperimentConfig, source: builders.Source, split: str,
                 tokenizer_path: str, workdir: str) -> packed.PackedRows:
  """One split's packed rows on disk, written first if they are not there yet."""
  seq_len, data = experiment.train.seq_len, experiment.data
  jobs = shard_jobs(source, split, tokenizer_path, seq_len, workdir, data.records_per_shard)
  stems = [job.stem for job in jobs]
  index = os.path.join(os.path.dirname(stems[0]), 'index.json') if stems else ''
  if any(not packed.is_written(stem) for stem in stems):
    with console.phase(f'Tokenizing and packing {source.name} ({split}, {len(jobs)} shards)'):
      write_shards(jobs, data.beam_runner, data.beam_options)
  if stems and not os.path.exists(index) and jax.process_index() == 0:
    packed.write_index(index, stems)  # the other hosts read the shards' files meanwhile
  # Each of this host's streams reads one window of shards at a time (two
  # while it crosses from one to the next).
  local_streams = max(1, data.streams // jax.process_count())
  rows = packed.PackedRows(stems, seq_len, index=index,
                           open_shards=local_streams * (2 * data.window_shards + 2))
  for reason, origins in rows.bad_records().items():
    for origin in origins:
      source.bad_records.add(origin, reason)
  return rows


def build(experiment: ExperimentConfig, workdir: str) -> Datasets:
  sources = open_sources(experiment, workdir)
  tokenizer_for(experiment, workdir, sources)
  path = tokenizer_path(experiment, workdir)
  batch = experiment.train.batch_size
  weights = {name: source.weight for name, source in experiment.data.sources if name in sources}
  rows = {split: {} for split in builders.SPLITS}
  for name, source in sources.items():
    for split in builders.SPLITS:
      rows[split][name] = packed_split(experiment, source, split, path, workdir)
    source.bad_records.log(name)
  for name, split_rows in list(rows['validation'].items()):
    if not len(split_rows):
      logging.warning('Data source %s has no held-out rows; it is left out of evaluation.', name)
      del rows['validation'][name]
  hosts = host_slice(experiment)
  datasets = Datasets(
      train=MixtureSampler(rows['train'], weights, batch, experiment.train.seed, **hosts),
      eval=MixtureSampler(rows['validation'], weights, batch, experiment.train.seed + 1, **hosts),
      packing_efficiency=efficiency(rows['train'].values()),
      bad_records={name: source.bad_records.counts() for name, source in sources.items()})
  streams = datasets.train.local_streams()
  logging.info('Process %d reads streams %d..%d of %d: shards %s of the training sources.',
               jax.process_index(), streams.start, streams.stop - 1, datasets.train.streams,
               {name: _spans(shards) for name, shards in datasets.train.local_shards().items()})
  return datasets


def host_slice(experiment: ExperimentConfig) -> dict:
  """The sampler arguments that say which part of each batch this host reads."""
  return dict(process_index=jax.process_index(), process_count=jax.process_count(),
              window_shards=experiment.data.window_shards, streams=experiment.data.streams)


def _spans(numbers: list[int]) -> str:
  """[0, 2, 4, 5, 6] -> '0,2,4-6' (a host's shards, short enough to log)."""
  spans = []
  for number in numbers:
    if spans and number == spans[-1][1] + 1:
      spans[-1][1] = number
    else:
      spans.append([number, number])
  return ','.join(str(a) if a == b else f'{a}-{b}' for a, b in spans)


def efficiency(sources) -> float:
  """The fraction of row positions that hold tokens rather than padding."""
  positions = sum(len(rows) * rows.seq_len for rows in sources)
  return sum(rows.tokens for rows in sources) / max(positions, 1)
