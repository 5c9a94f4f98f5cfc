"""A stateless, step-indexed sampler over a weighted mixture of sources.

The batch at step s is a pure function of (seed, s), as in Levanter and Grain:
resuming needs only the step, so a restarted run sees exactly the batches it
would have seen.

The global batch is `streams` equal parts, one per stream, and a stream owns
a fixed slice of every source's shards (shard i belongs to stream
i % streams; a source with too few shards to give every stream rows is read
whole by each). Each host takes a contiguous slice of the global batch: when
the host count divides `streams`, that is whole streams, so a host opens only
its streams' shards, and the batches, hence the losses, do not depend on how
many hosts read them (`data.streams` is part of the run, not of the machine).

Within a stream, row r comes from the source that a seeded, per-cycle shuffle
of a fixed pattern assigns to it; each cycle of `CYCLE` rows holds every
source in proportion to its weight (largest remainder), so the mixture is
exact, not just right on average. Within a source, rows are drawn without
replacement in a fresh seeded order each epoch: the stream's shards in a
shuffled order, and the rows of each window of a few consecutive shards
shuffled among themselves, one index at a time by Grain's index shuffle (a
bijection; small domains use a cached permutation). No permutation of rows is
ever held, and only a window's shards need be open (a shard's reader holds an
index of its rows), so memory follows the window, not the corpus.
`prefetched` reads batches ahead on Grain's threads.
"""

import collections
import functools
import hashlib

import grain
from grain.experimental import index_shuffle
import numpy as np

CYCLE = 1024
SMALL_DOMAIN = 4096  # below this many items, a cached permutation beats index_shuffle


@functools.lru_cache(maxsize=64)
def _small_permutation(size: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).permutation(size)


def bijection(index: int, size: int, seed: int) -> int:
  """Position of `index` in a seeded permutation of range(size). Grain's
  index_shuffle holds nothing but walks cycles, which costs milliseconds on a
  domain of a few items (10 ms at 3, 4 us at 10^6), so small domains use a
  cached permutation of at most SMALL_DOMAIN entries."""
  if size <= SMALL_DOMAIN:
    return int(_small_permutation(size, seed)[index])
  return index_shuffle(index, size - 1, seed, 4)


def _cycle_counts(weights: dict[str, float]) -> dict[str, int]:
  """Rows per cycle for each source: proportional to weight, summing to CYCLE."""
  total = sum(weights.values())
  exact = {name: CYCLE * weight / total for name, weight in weights.items()}
  counts = {name: int(value) for name, value in exact.items()}
  by_remainder = sorted(exact, key=lambda name: exact[name] - counts[name], reverse=True)
  for name in by_remainder[:CYCLE - sum(counts.values())]:
    counts[name] += 1
  return counts


def stream_shards(shard_rows, streams: int) -> list[np.ndarray]:
  """The shards of a source each stream reads: every streams-th shard, or all
  of them for every stream when some stream would get no rows that way."""
  shard_rows = np.asarray(shard_rows)
  owned = [np.arange(stream, len(shard_rows), streams) for stream in range(streams)]
  if all(shard_rows[shards].sum() for shards in owned):
    return owned
  return [np.arange(len(shard_rows))] * streams


class MixtureSampler:

  def __init__(self, sources: dict, weights: dict[str, float], global_batch: int, seed: int,
               process_index: int = 0, process_count: int = 1, window_shards: int = 16,
               streams: int = 1):
    """sources: name -> packed.PackedRows; weights: name -> weight; window_shards:
    how many shards of a source are read from at a time (see _shuffled);
    streams: how many parts the global batch and every source's shards are
    split into (see the module's docstring)."""
    empty = [name for name, rows in sources.items() if not len(rows)]
    if empty:
      raise ValueError(f'data source {empty[0]!r} has no rows to sample')
    if global_batch % process_count:
      raise ValueError(f'global batch {global_batch} does not split over {process_count} hosts')
    if global_batch % streams:
      raise ValueError(f'global batch {global_batch} does not split into {streams} streams')
    self.sources, self.names = sources, sorted(sources)
    self.counts = _cycle_counts({name: weights[name] for name in self.names})
    self.global_batch, self.seed, self.window_shards = global_batch, seed, window_shards
    self.streams, self.stream_batch = streams, global_batch // streams
    self.local_batch = global_batch // process_count
    self.local_offset = process_index * self.local_batch
    self._shards = [stream_shards(sources[name].shard_rows, streams) for name in self.names]
    self._stream_rows = [[int(np.asarray(sources[name].shard_rows)[shards].sum())
                          for shards in self._shards[source]]
                         for source, name in enumerate(self.names)]
    self._base_pattern = np.repeat(np.arange(len(self.names)),
                                   [self.counts[name] for name in self.names])
    self._patterns, self._layouts = {}, {}  # per stream (and source): the current cycle / epoch

  @staticmethod
  def _current(cache: dict, key, version: int, make):
    """make() for `key` at `version`, holding one version per key: a stream
    moves forward through its cycles and epochs, so memory follows the
    streams, not the run's length (going back, as eval does, only recomputes)."""
    held = cache.get(key)
    if held is None or held[0] != version:
      held = cache[key] = (version, make())
    return held[1]

  def _pattern(self, stream: int, cycle: int) -> np.ndarray:
    return self._current(self._patterns, stream, cycle, lambda: np.random.default_rng(
        [self.seed, 0, stream, cycle]).permutation(self._base_pattern))

  @functools.lru_cache(maxsize=1024)  # noqa: B019 -- a sampler lives as long as its run
  def _seed(self, *key: int) -> int:
    return int(np.random.SeedSequence([self.seed, *key]).generate_state(1)[0])

  def _epoch_layout(self, source: int, stream: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(the stream's shards of a source in this epoch's order, the first row of
    each in that order, then the total)."""
    def make():
      shards = self._shards[source][stream]
      seed = self._seed(1, source, stream, epoch)
      order = shards[[bijection(i, len(shards), seed) for i in range(len(shards))]]
      sizes = np.asarray(self.sources[self.names[source]].shard_rows)[order]
      return order, np.concatenate([[0], np.cumsum(sizes)])
    return self._current(self._layouts, (source, stream), epoch, make)

  def _shuffled(self, source: int, stream: int, epoch: int, draw: int) -> int:
    """The row at `draw` of this epoch's order of a stream's part of a source:
    its shards in a fresh order, and the rows of each window of
    `window_shards` consecutive shards in a fresh order among themselves. A
    bijection, so each row comes once per epoch; only a window's shards are
    read at a time."""
    order, starts = self._epoch_layout(source, stream, epoch)
    window = int(np.searchsorted(starts, draw, 'right') - 1) // self.window_shards
    low = starts[window * self.window_shards]
    high = starts[min((window + 1) * self.window_shards, len(order))]
    position = low + bijection(int(draw - low), int(high - low),
                               self._seed(2, source, stream, epoch, window))
    shard = int(np.searchsorted(starts, position, 'right') - 1)
    return self.sources[self.names[source]].first_row(int(order[shard])) + int(
        position - starts[shard])

  def draw(self, global_row: int) -> tuple[str, int]:
    """(source name, row index in that source) of one row of the global stream:
    row `global_row % global_batch` of step `global_row // global_batch`."""
    step, position = divmod(global_row, self.global_batch)
    stream, within = divmod(position, self.stream_batch)
    cycle, position = divmod(step * self.stream_batch + within, CYCLE)
    pattern = self._pattern(stream, cycle)
    source = int(pattern[position])
    # Draws of this source before this row: whole cycles, then this cycle so far.
    draw = cycle * self.counts[self.names[source]] + int((pattern[:position] == source).sum())
    epoch, row = divmod(draw, self._stream_rows[source][stream])
    return self.names[source], self._shuffled(source, stream, epoch, row)

  def draws(self, step: int) -> list[tuple[str, int]]:
    """This host's rows at `step`."""
    first = step * self.global_batch + self.local_offset
    return [self.draw(row) for row in range(first, first + self.local_batch)]

  def local_streams(self) -> range:
    """The streams this host reads rows of."""
    last = self.local_offset + self.local_batch - 1
    return range(self.local_offset // self.stream_batch, last // self.stream_batch + 1)

  def local_shards(self) -> dict[str, list[int]]:
    """Source -> the shards this host's streams may read (all this host ever opens)."""
    return {name: sorted({int(shard) for stream in self.local_streams()
                          for shard in self._shards[source][stream]})
            for source, name in enumerate(self.names)}

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This host's rows at `step`, field -> [local batch, seq_len]; each source
    is read once, for all its rows in the batch."""
    wanted = collections.defaultdict(list)  # source -> [(position in batch, row)]
    for position, (name, row) in enumerate(self.draws(step)):
      wanted[name].append((position, row))
    batch = {}
    for name, items in wanted.items():
      positions, rows = zip(*items)
      for field, values in self.sources[name].take(rows).items():
        if field not in batch:
          batch[field] = np.zeros((self.local_batch,) + values.shape[1:], values.dtype)
        batch[field][list(positions)] = values
    return batch

  @functools.cached_property
  def fingerprint(self) -> str:
    """Identifies the data, the mixture and the streams, so a resume onto
    different data is caught; from the sources' identities, never by reading
    their rows."""
    digest = hashlib.sha256(f'streams:{self.streams}'.encode())
    for name in self.names:
      digest.update(f'{name}:{self.counts[name]}:{self.sources[name].identity}'.encode())
    return digest.hexdigest()[:16]

  def state(self, next_step: int) -> dict:
    """What a checkpoint records of the input position."""
    return {'next_step': next_step, 'seed': self.seed, 'global_batch': self.global_batch,
            'streams': self.streams, 'fingerprint': self.fingerprint}


def prefetched(sampler: MixtureSampler, start: int, stop: int, threads: int = 2,
               buffer: int = 4):
  """An iterator over sampler.batch(step) for start <= step < stop, read ahead
  by Grain on `threads` threads so the train step does not wait on disk.
  Each batch is still the pure function of its step: resuming needs only it."""
  steps = grain.MapDataset.range(start, stop).map(sampler.batch)
  return iter(steps.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                      prefetch_buffer_size=buffer)))
