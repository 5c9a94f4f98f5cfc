"""Packed rows on disk: ArrayRecord shards written once, read by index through Grain.

Tokenizing and packing happen at prepare time, not at every start: each shard
`<stem>.array_record` holds rows of `packing.FIELDS` (one record per row, the
fields' `seq_len` little-endian 4-byte values back to back; group size 1, so
reading one row decompresses only that row) and `<stem>.json`, written after
it, says what it holds: rows, tokens (non-padding positions), the sha256 of
its records and the bad records met making it. A shard without its JSON was
never finished and is written again. A reader holds the shards' metadata and
open file handles, never the rows: memory does not grow with the corpus.
"""

import dataclasses
import hashlib
import json
import os

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
  with open(f'{stem}.json.tmp{os.getpid()}', 'w', encoding='utf-8') as f:
    json.dump(meta, f)
  os.replace(f'{stem}.json.tmp{os.getpid()}', stem + '.json')
  return meta


@dataclasses.dataclass
class PackedRows:
  """Random access to the rows of a list of written shards, in order."""
  stems: list[str]
  seq_len: int

  def __post_init__(self):
    self.shards = []
    for stem in self.stems:
      with open(stem + '.json', encoding='utf-8') as f:
        self.shards.append(json.load(f))
    files = [stem + '.array_record' for stem, meta in zip(self.stems, self.shards) if meta['rows']]
    self._source = grain.sources.ArrayRecordDataSource(files) if files else None

  def __len__(self) -> int:
    return sum(meta['rows'] for meta in self.shards)

  def take(self, indices) -> dict[str, np.ndarray]:
    """field -> [len(indices), seq_len], in the order asked."""
    return decode(self._source.__getitems__([int(i) for i in indices]), self.seq_len)

  @property
  def tokens(self) -> int:
    return sum(meta['tokens'] for meta in self.shards)

  @property
  def identity(self) -> str:
    """Names the rows' content, from the shards' own checksums: reading no row."""
    digest = hashlib.sha256(str(self.seq_len).encode())
    for meta in self.shards:
      digest.update(meta['sha256'].encode())
    return digest.hexdigest()[:16]

  def bad_records(self) -> dict[str, list[str]]:
    """reason -> origins, over every shard."""
    merged = {}
    for meta in self.shards:
      for reason, origins in meta['bad_records'].items():
        merged.setdefault(reason, []).extend(origins)
    return merged


def write(stem: str, rows, seq_len: int) -> PackedRows:
  """One shard of rows written and opened (fine-tuning's small tasks)."""
  write_shard(stem, rows)
  return PackedRows([stem], seq_len)
