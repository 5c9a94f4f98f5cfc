"""TFDS builders for a lab's local dialogs and documents, and TFDS datasets by
name (rated responses have theirs in finetune/labels.py, on the same base).

The builders read JSONL (or .txt) files and prepare ArrayRecord files with
random access (`as_data_source`); TensorFlow is not needed. A prepared dataset
lives in a folder named by a fingerprint of its input files, so editing the
files prepares it anew. The held-out split is chosen per conversation or
document (a hash of its id), never per turn.

Bad records never crash generation and are never dropped silently: each is
counted by reason and listed with its file:line in `bad_records.json` beside
the prepared data; the input pipeline logs them every time it loads the data.
"""

import collections
import dataclasses
import functools
import glob
import hashlib
import json
import os
import zlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from lamda_jax import console
from lamda_jax.config import SourceConfig
from lamda_jax.data import dialog

SPLITS = ('train', 'validation')
REPORT_FILE = 'bad_records.json'


class BadRecords:
  """Counts bad records by reason, keeping their file:line."""

  def __init__(self):
    self.records = collections.defaultdict(list)

  def add(self, origin: str, reason: str):
    self.records[reason].append(origin)

  def counts(self) -> dict[str, int]:
    return {reason: len(origins) for reason, origins in self.records.items()}

  def log(self, name: str):
    for reason, origins in sorted(self.records.items()):
      examples = ', '.join(origins[:5]) + (' ...' if len(origins) > 5 else '')
      logging.warning('Data source %s: %d record(s) skipped, %s: %s', name, len(origins), reason,
                      examples)

  def to_json(self) -> dict:
    return {reason: origins for reason, origins in self.records.items()}

  @classmethod
  def from_json(cls, data: dict) -> 'BadRecords':
    report = cls()
    for reason, origins in data.items():
      report.records[reason].extend(origins)
    return report


def held_out(key: str, eval_fraction: float) -> bool:
  """Whether a whole conversation or document belongs to the validation split."""
  return zlib.crc32(key.encode('utf-8')) % 1_000_000 < eval_fraction * 1_000_000


def parse_dialog(record: dict) -> list[dict]:
  """The turns of a dialog record; ValueError says why it is unusable."""
  turns = record.get('turns')
  if not isinstance(turns, list):
    raise ValueError('missing "turns" list')
  if not turns:
    raise ValueError('empty dialog')
  for index, turn in enumerate(turns):
    if not (isinstance(turn, dict) and isinstance(turn.get('speaker'), str)
            and isinstance(turn.get('text'), str)):
      raise ValueError(f'turn {index} lacks a "speaker" or "text" string')
    if not turn['text'].strip():
      raise ValueError(f'turn {index} has empty text')
  return turns


def parse_document(record: dict) -> str:
  if not isinstance(record.get('text'), str) or not record['text'].strip():
    raise ValueError('missing or empty "text"')
  return record['text']


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared by the local builders: files in, split by a key, report out.

  In this process, one pass over the files finds the splits that receive
  examples (TFDS cannot write an empty one) and counts the bad records. With
  `beam_runner`, TFDS runs the preparation as a Beam pipeline over the files
  (`beam.Create(paths) | beam.FlatMap(...)`, one file per work item) and
  each file's bad records land in `<data_dir>/bad_records/`, merged after.
  """
  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, paths, eval_fraction, beam_runner='', beam_options=(), **kwargs):
    self._paths, self._eval_fraction = paths, eval_fraction
    self._beam_runner, self._beam_options = beam_runner, tuple(beam_options)
    self._report_dir = os.path.join(kwargs['data_dir'], 'bad_records')  # Beam's, per file
    self.bad_records = BadRecords()
    super().__init__(**kwargs)

  @classmethod
  def split_key(cls, key: str, example) -> str:
    """What decides the split: the record's id; subclasses may use a coarser key."""
    del example
    return key

  @classmethod
  def path_examples(cls, path: str, bad: BadRecords):
    """(key, example) of each good record of one file; bad ones counted into `bad`."""
    raise NotImplementedError

  def _split_of(self, key: str, example) -> str:
    held = held_out(self.split_key(key, example), self._eval_fraction)
    return 'validation' if held else 'train'

  def _examples(self, bad):
    for path in self._paths:
      yield from self.path_examples(path, bad)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    if self._beam_runner:
      import apache_beam as beam  # pylint: disable=import-outside-toplevel  # only when asked for
      return {split: beam.Create(self._paths) | f'{split} examples' >> beam.FlatMap(
          functools.partial(_file_split, type(self), split=split,
                            eval_fraction=self._eval_fraction, report_dir=self._report_dir))
              for split in SPLITS}
    used = {self._split_of(*item) for item in self._examples(self.bad_records)}  # counts once
    return {split: self._generate_examples(split) for split in SPLITS if split in used}

  def _generate_examples(self, split):  # pylint: disable=arguments-differ
    for key, example in self._examples(BadRecords()):  # already counted
      if self._split_of(key, example) == split:
        yield key, example

  def prepare(self):
    """download_and_prepare, on Beam when asked; afterwards `bad_records` holds
    what preparation found, by whichever path."""
    if not self._beam_runner:
      self.download_and_prepare()
      return
    import apache_beam as beam  # pylint: disable=import-outside-toplevel  # only when asked for
    os.makedirs(self._report_dir, exist_ok=True)
    options = beam.options.pipeline_options.PipelineOptions(list(self._beam_options))
    try:
      self.download_and_prepare(download_config=tfds.download.DownloadConfig(
          beam_runner=self._beam_runner, beam_options=options))
    except (ValueError, RuntimeError) as error:  # Beam may wrap TFDS's error
      if 'total number of generated examples is 0' not in str(error):
        raise
      raise ValueError(f'{", ".join(self._paths[:3])}: a split got no records (eval_fraction '
                       f'{self._eval_fraction}); on Beam both splits must hold some') from None
    for name in sorted(n for n in os.listdir(self._report_dir) if n.endswith('.json')):
      with open(os.path.join(self._report_dir, name), encoding='utf-8') as f:
        for reason, origins in json.load(f).items():
          for origin in origins:
            self.bad_records.add(origin, reason)


def _file_split(builder_class, path: str, *, split: str, eval_fraction: float, report_dir: str):
  """A Beam work item: the examples of one file in one split. The train pass
  writes the file's bad records (both passes meet the same ones)."""
  bad = BadRecords()
  for key, example in builder_class.path_examples(path, bad):
    if (split == 'validation') == held_out(builder_class.split_key(key, example), eval_fraction):
      yield key, example
  if split == 'train':
    name = hashlib.sha256(path.encode()).hexdigest()[:16] + '.json'
    with open(os.path.join(report_dir, name + '.tmp'), 'w', encoding='utf-8') as f:
      json.dump(bad.to_json(), f)
    os.replace(os.path.join(report_dir, name + '.tmp'), os.path.join(report_dir, name))


class LamdaDialogs(LocalBuilder):
  """Dialogs: JSONL lines of {"id"?, "turns": [{"speaker", "text"}, ...]}."""

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=tfds.features.FeaturesDict({
                                     'origin': tfds.features.Text(),
                                     'speakers': tfds.features.Sequence(tfds.features.Text()),
                                     'texts': tfds.features.Sequence(tfds.features.Text()),
                                 }))

  @classmethod
  def path_examples(cls, path: str, bad: BadRecords):
    for origin, record, turns in dialog.read_jsonl(path, parse_dialog, bad):
      yield str(record.get('id', origin)), {
          'origin': origin, 'speakers': [t['speaker'] for t in turns],
          'texts': [t['text'] for t in turns]}


class LamdaDocuments(LocalBuilder):
  """Documents: JSONL lines of {"id"?, "text"}, or .txt files (one document each)."""

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                 features=tfds.features.FeaturesDict({
                                     'origin': tfds.features.Text(),
                                     'text': tfds.features.Text()}))

  @classmethod
  def path_examples(cls, path: str, bad: BadRecords):
    if path.endswith('.txt'):
      records = text_file(path, bad)
    else:
      records = dialog.read_jsonl(path, parse_document, bad)
    for origin, record, text in records:
      yield str(record.get('id', origin)), {'origin': origin, 'text': text}


def text_file(path: str, bad: BadRecords):
  """A .txt file as one document record, under the JSONL reader's text rule."""
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    record = {'id': path, 'text': dialog.cleaned_text(raw.decode('utf-8'))}
    yield f'{path}:1', record, parse_document(record)
  except UnicodeDecodeError as error:
    bad.add(f'{path}:1', f'invalid UTF-8 (byte {error.start})')
  except ValueError as error:
    bad.add(f'{path}:1', str(error))


@dataclasses.dataclass
class Source:
  """A prepared source: random-access splits of dialogs (lists of turns) or
  texts. It pickles as where its data lives and opens it again on the other
  side, so a Beam worker can read it."""
  name: str
  kind: str
  location: tuple  # ('directory', prepared builder dir) or ('tfds', name, data_dir)
  bad_records: BadRecords
  identity: str  # names the prepared data: changes whenever its content may have
  text_field: str = 'text'

  def __post_init__(self):
    self.splits = _open_splits(self.location)  # split -> random-access data source

  def __getstate__(self):
    return {key: value for key, value in self.__dict__.items() if key != 'splits'}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self.__post_init__()

  def size(self, split: str) -> int:
    """Records in a split; one that received no examples has none."""
    return len(self.splits.get(split, []))

  def records(self, split: str, start: int = 0, stop: int | None = None):
    """(origin, record) of records [start, stop) with bytes decoded:
    {'speakers', 'texts'} or {'text'}."""
    data = self.splits.get(split, [])
    for index in range(start, len(data) if stop is None else min(stop, len(data))):
      example = data[index]
      if self.kind == 'tfds':
        yield f'{self.name}[{split}][{index}]', {'text': decode(example[self.text_field])}
        continue
      decoded = {key: decode(value) for key, value in example.items()}
      yield decoded.pop('origin'), decoded


def decode(value):
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, (list, tuple, np.ndarray)):
    return [decode(v) for v in value]
  return value


def fingerprint(kind: str, paths, eval_fraction: float) -> str:
  digest = hashlib.sha256(f'{kind}:{eval_fraction}:{LocalBuilder.VERSION}'.encode())
  for path in paths:
    stat = os.stat(path)
    digest.update(f'{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}'.encode())
  return digest.hexdigest()[:12]


def expand_paths(field: str, patterns) -> list[str]:
  """Files of a config field's globs, in a stable order; a pattern matching nothing is an error."""
  paths = []
  for pattern in patterns:
    matched = sorted(glob.glob(pattern))
    if not matched:
      raise FileNotFoundError(f'config.{field}: {pattern!r} matches no file')
    paths.extend(matched)
  return paths


def _open_splits(location: tuple) -> dict:
  if location[0] == 'tfds':
    _, tfds_name, data_dir = location
    return {split: tfds.data_source(tfds_name, split=split, data_dir=data_dir or None,
                                    download=False) for split in SPLITS}
  return tfds.builder_from_directory(location[1]).as_data_source()


def prepare(name: str, config: SourceConfig, paths, tfds_dir: str, eval_fraction: float,
            beam_runner: str = '', beam_options=()) -> Source:
  """Prepares (once; on Beam with `beam_runner`) and opens one source."""
  if config.kind == 'tfds':
    location = ('tfds', config.tfds_name, tfds_dir)
    splits = _open_splits(location)
    identity = f'{config.tfds_name}:' + ','.join(str(len(s)) for s in splits.values())
    return Source(name, 'tfds', location, BadRecords(), identity, config.text_field)
  builder_class = LamdaDialogs if config.kind == 'dialogs' else LamdaDocuments
  data_dir = os.path.join(tfds_dir, f'{name}-{fingerprint(config.kind, paths, eval_fraction)}')
  builder = builder_class(paths=paths, eval_fraction=eval_fraction, data_dir=data_dir,
                          file_format='array_record', beam_runner=beam_runner,
                          beam_options=beam_options)
  bad = prepare_once(builder, data_dir, f'Preparing data source {name}')
  return Source(name, config.kind, ('directory', builder.data_dir), bad,
                os.path.basename(data_dir))


def prepare_once(builder: LocalBuilder, data_dir: str, title: str) -> BadRecords:
  """Prepares the builder's ArrayRecord files unless done; returns (and logs
  every time) the bad records found while preparing, kept in REPORT_FILE."""
  report_path = os.path.join(data_dir, REPORT_FILE)
  if not os.path.exists(report_path):
    with console.phase(title), console.library_output():
      builder.prepare()
    with open(report_path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump(builder.bad_records.to_json(), f)
    os.replace(report_path + '.tmp', report_path)
  with open(report_path, encoding='utf-8') as f:
    return BadRecords.from_json(json.load(f))
