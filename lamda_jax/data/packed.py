"""Packed rows on disk: ArrayRecord shards written once, read by index through Grain.

Tokenizing and packing happen at prepare time, not at every start: each shard
`<stem>.array_record` holds rows of `packing.FIELDS` (one record per row, the
fields' `seq_len` little-endian 4-byte values back to back; group size 1, so
reading one row decompresses only that row) and `<stem>.json`, written after
it, says what it holds: rows, tokens (non-padding positions), the sha256 of
its records and the bad records met making it. A shard without its JSON was
never finished and is written again. A reader holds the shards' metadata and
a bounded number of open shards, never the rows.

A split's `index.json` gathers its shards' metadata into one file, so a start
(or a resume) on a pod's corpus reads one file instead of one per shard; it
is only a cache: a reader that finds none, or one listing other shards,
reads the shards' own files.
"""

import collections
import dataclasses
import hashlib
import json
import os
import threading

from array_record.python.array_record_module import ArrayRecordWriter
import grain
import numpy as np

from lamda_jax.data import packing

_DTYPE = {field: np.dtype(packing.field_dtype(field)).newbyteorder('<')
          for field in packing.FIELDS}


def encode(row: dict[str, np.ndarray]) -> bytes:
  return b''.join(np.asarray(row[field], _DTYPE[field]).tobytes() for field in packing.FIELDS)


def decode(records: list[bytes], seq_len: int) -> dict[str, np.ndarray]:
  """Records -> field -> [len(records), seq_len]."""
  flat = np.frombuffer(b''.join(records), np.uint8).reshape(len(records), len(packing.FIELDS), -1)
  if flat.shape[2] != 4 * seq_len:
    raise ValueError(f'packed rows hold {flat.shape[2] // 4} positions, not seq_len {seq_len}')
  return {field: flat[:, i].copy().view(_DTYPE[field]).astype(packing.field_dtype(field))
          for i, field in enumerate(packing.FIELDS)}


def is_written(stem: str) -> bool:
  return os.path.exists(stem + '.json')


def write_shard(stem: str, rows, bad_records=None) -> dict:
  """Writes rows (an iterable of field -> [seq_len]) to `stem`; returns its
  metadata. `bad_records` (builders.BadRecords) is read once the rows are
  exhausted, so a generator may fill it while it yields.

  The array file goes to a temporary name first and the JSON last, so a
  crash leaves either a whole shard or one that is written again.
  """
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  temporary = f'{stem}.array_record.tmp{os.getpid()}'
  writer = ArrayRecordWriter(temporary, 'group_size:1')
  digest, count, tokens = hashlib.sha256(), 0, 0
  try:
    for row in rows:
      record = encode(row)
      writer.write(record)
      digest.update(record)
      count += 1
      tokens += int((np.asarray(row['segment_ids']) != 0).sum())
  finally:
    writer.close()
  os.replace(temporary, stem + '.array_record')
  meta = {'rows': count, 'tokens': tokens, 'sha256': digest.hexdigest(),
          'bad_records': bad_records.to_json() if bad_records else {}}
  _write_json(stem + '.json', meta)
  return meta


def _write_json(path: str, value):
  """Whole or not at all: a temporary file renamed into place."""
  with open(f'{path}.tmp{os.getpid()}', 'w', encoding='utf-8') as f:
    json.dump(value, f)
  os.replace(f'{path}.tmp{os.getpid()}', path)


def write_index(path: str, stems: list[str]):
  """The metadata of written shards `stems`, in order, as one file at `path`."""
  metas = []
  for stem in stems:
    with open(stem + '.json', encoding='utf-8') as f:
      metas.append(json.load(f))
  _write_json(path, {'stems': [os.path.basename(stem) for stem in stems], 'shards': metas})


@dataclasses.dataclass
class PackedRows:
  """Random access to the rows of a list of written shards, in order.

  A shard's reader is opened on first use and at most `open_shards` stay
  open (an ArrayRecord reader holds its file's index of records: memory
  follows the shards in use, not the corpus)."""
  stems: list[str]
  seq_len: int
  open_shards: int = 64
  index: str = ''  # a write_index file of these stems; read instead of one file per shard

  def __post_init__(self):
    # Per shard only its row count is kept (a pod's corpus has many shards).
    self.shard_rows, self.tokens = np.zeros(len(self.stems), np.int64), 0
    digest = hashlib.sha256(str(self.seq_len).encode())
    for index, meta in enumerate(self._metadata()):
      self.shard_rows[index] = meta['rows']
      self.tokens += meta['tokens']
      digest.update(meta['sha256'].encode())
    self.identity = digest.hexdigest()[:16]  # names the content, from the shards' checksums
    self._offsets = np.concatenate([[0], np.cumsum(self.shard_rows)]).astype(np.int64)
    self._readers = collections.OrderedDict()  # shard -> reader, least recently used first
    self.opened = set()  # every shard this reader has opened: what a host read
    self._lock = threading.Lock()  # Grain's threads read batches at once

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def first_row(self, shard: int) -> int:
    return int(self._offsets[shard])

  def _reader(self, shard: int):
    with self._lock:
      if shard in self._readers:
        self._readers.move_to_end(shard)
      else:
        self._readers[shard] = grain.sources.ArrayRecordDataSource(
            [self.stems[shard] + '.array_record'])
        self.opened.add(shard)
        if len(self._readers) > self.open_shards:
          self._readers.popitem(last=False)
      return self._readers[shard]

  def take(self, indices) -> dict[str, np.ndarray]:
    """field -> [len(indices), seq_len], in the order asked."""
    indices = np.asarray(indices, np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
      raise IndexError(f'rows {indices.min()}..{indices.max()} outside 0..{len(self) - 1}')
    shards = np.searchsorted(self._offsets, indices, 'right') - 1
    records = [b''] * len(indices)
    for shard in np.unique(shards):
      at = np.flatnonzero(shards == shard)
      local = (indices[at] - self._offsets[shard]).tolist()
      for position, record in zip(at, self._reader(int(shard)).__getitems__(local)):
        records[position] = record
    return decode(records, self.seq_len)

  def _metadata(self):
    if self.index and os.path.exists(self.index):
      with open(self.index, encoding='utf-8') as f:
        index = json.load(f)
      if index['stems'] == [os.path.basename(stem) for stem in self.stems]:
        yield from index['shards']
        return
    for stem in self.stems:
      with open(stem + '.json', encoding='utf-8') as f:
        yield json.load(f)

  def bad_records(self) -> dict[str, list[str]]:
    """reason -> origins, over every shard."""
    merged = {}
    for meta in self._metadata():
      for reason, origins in meta['bad_records'].items():
        merged.setdefault(reason, []).extend(origins)
    return merged


def write(stem: str, rows, seq_len: int) -> PackedRows:
  """One shard of rows written and opened (fine-tuning's small tasks)."""
  write_shard(stem, rows)
  return PackedRows([stem], seq_len)
