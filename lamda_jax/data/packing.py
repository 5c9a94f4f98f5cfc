"""Packing variable-length examples into fixed-length rows.

Each example becomes one segment of a row: `targets` are its tokens, `inputs`
the same shifted right with 0 at the segment start (t5x's decoder-only
convention), `segment_ids` number the segments from 1 (0 is padding) and
`positions` restart at 0, so the model never attends across examples.
"""

import dataclasses

import numpy as np

FIELDS = ('inputs', 'targets', 'loss_weights', 'segment_ids', 'positions', 'task_ids')


def field_dtype(field: str) -> type:
  return np.float32 if field == 'loss_weights' else np.int32


@dataclasses.dataclass(frozen=True)
class Example:
  tokens: tuple[int, ...]
  loss_weights: tuple[float, ...]  # one per token: where the loss applies
  task_id: int = 0


def pack_rows(examples, seq_len: int):
  """Greedy, order-preserving packing, one row at a time (field -> [seq_len]):
  memory holds one row however many examples stream through."""
  row, used = [], 0
  for example in examples:
    if len(example.tokens) > seq_len:
      raise ValueError(f'example of {len(example.tokens)} tokens exceeds seq_len {seq_len}')
    if used + len(example.tokens) > seq_len:
      yield _row(row, seq_len)
      row, used = [], 0
    row.append(example)
    used += len(example.tokens)
  if row:
    yield _row(row, seq_len)


def _row(examples, seq_len: int) -> dict[str, np.ndarray]:
  arrays = {field: np.zeros(seq_len, field_dtype(field)) for field in FIELDS}
  start = 0
  for segment, example in enumerate(examples, start=1):
    end = start + len(example.tokens)
    arrays['targets'][start:end] = example.tokens
    arrays['inputs'][start + 1:end] = example.tokens[:-1]
    arrays['loss_weights'][start:end] = example.loss_weights
    arrays['segment_ids'][start:end] = segment
    arrays['positions'][start:end] = np.arange(len(example.tokens))
    arrays['task_ids'][start:end] = example.task_id
    start = end
  return arrays
