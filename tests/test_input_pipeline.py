"""Packing, packed rows on disk, the step-indexed sampler and its memory."""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lamda_jax.data import packed, packing
from lamda_jax.data import sampler as sampler_lib
from lamda_jax.data.sampler import MixtureSampler, prefetched

_WORKED = [packing.Example((11, 12, 13), (1.0, 1.0, 1.0)),
           packing.Example((21, 22), (0.0, 1.0), task_id=1),
           packing.Example((31, 32, 33, 34), (1.0, 1.0, 1.0, 1.0))]


def test_pack_worked_example_through_disk(tmp_path):
  rows = packed.write(str(tmp_path / 'rows'), packing.pack_rows(_WORKED, seq_len=6), seq_len=6)
  assert len(rows) == 2 and rows.tokens == 9
  got = rows.take([1, 0])  # in the order asked
  np.testing.assert_array_equal(got['targets'], [[31, 32, 33, 34, 0, 0], [11, 12, 13, 21, 22, 0]])
  np.testing.assert_array_equal(got['inputs'], [[0, 31, 32, 33, 0, 0], [0, 11, 12, 0, 21, 0]])
  np.testing.assert_array_equal(got['segment_ids'], [[1, 1, 1, 1, 0, 0], [1, 1, 1, 2, 2, 0]])
  np.testing.assert_array_equal(got['positions'], [[0, 1, 2, 3, 0, 0], [0, 1, 2, 0, 1, 0]])
  np.testing.assert_array_equal(got['loss_weights'], [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 1, 0]])
  np.testing.assert_array_equal(got['task_ids'], [[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0]])
  assert got['loss_weights'].dtype == np.float32 and got['targets'].dtype == np.int32


def test_unpacking_gives_back_the_examples(tmp_path):
  rng = np.random.default_rng(0)
  examples = [packing.Example(tuple(int(t) for t in rng.integers(3, 99, n)), (0.5,) * n)
              for n in rng.integers(1, 17, 50)]
  rows = packed.write(str(tmp_path / 'rows'), packing.pack_rows(examples, seq_len=16), 16)
  got = rows.take(range(len(rows)))
  unpacked = [tuple(int(t) for t in got['targets'][r][got['segment_ids'][r] == s])
              for r in range(len(rows)) for s in range(1, got['segment_ids'][r].max() + 1)]
  assert unpacked == [e.tokens for e in examples]
  assert rows.tokens == sum(len(e.tokens) for e in examples) == (got['loss_weights'] > 0).sum()


def test_pack_rejects_an_example_longer_than_a_row():
  with pytest.raises(ValueError, match='example of 5 tokens exceeds seq_len 4'):
    list(packing.pack_rows([packing.Example((1, 2, 3, 4, 5), (1.0,) * 5)], seq_len=4))


def test_a_shard_is_whole_or_written_again(tmp_path):
  stem = str(tmp_path / 'rows')
  packed.write_shard(stem, packing.pack_rows(_WORKED, 6))
  assert packed.is_written(stem)
  os.remove(stem + '.json')  # a crash between the array file and its metadata
  assert not packed.is_written(stem)
  with pytest.raises(ValueError, match='hold 6 positions, not seq_len 8'):
    packed.write(stem, packing.pack_rows(_WORKED, 6), 8).take([0])


def test_identity_follows_the_content_not_the_file_name(tmp_path):
  first = packed.write(str(tmp_path / 'a'), packing.pack_rows(_WORKED, 6), 6)
  same = packed.write(str(tmp_path / 'b'), packing.pack_rows(_WORKED, 6), 6)
  changed = packed.write(str(tmp_path / 'c'), packing.pack_rows(_WORKED[:2], 6), 6)
  assert first.identity == same.identity != changed.identity
  assert json.loads((tmp_path / 'a.json').read_text())['rows'] == 2


_STEMS = itertools.count()


def _rows(directory, n=10, seq_len=4, offset=0):
  """n rows whose targets count up from offset, on disk."""
  def rows():
    for r in range(n):
      row = {field: np.zeros(seq_len, packing.field_dtype(field)) for field in packing.FIELDS}
      row['targets'] = offset + np.arange(r * seq_len, (r + 1) * seq_len)
      yield row
  return packed.write(os.path.join(directory, f'rows-{next(_STEMS)}'), rows(), seq_len)


def _single(rows, batch, seed, **hosts):
  return MixtureSampler({'only': rows}, {'only': 1.0}, batch, seed, **hosts)


def test_sampler_batches_are_a_pure_function_of_the_step(tmp_path):
  first, second = _single(_rows(tmp_path), 4, seed=7), _single(_rows(tmp_path), 4, seed=7)
  for step in (5, 0, 3, 100, 3):
    np.testing.assert_array_equal(first.batch(step)['targets'], second.batch(step)['targets'])
  assert not np.array_equal(_single(_rows(tmp_path), 4, seed=8).batch(0)['targets'],
                            first.batch(0)['targets'])


def test_sampler_visits_every_row_once_per_epoch(tmp_path):
  sampler = _single(_rows(tmp_path, 12), 4, seed=0)
  epoch = [row for step in range(3) for _, row in sampler.draws(step)]
  assert sorted(epoch) == list(range(12))
  next_epoch = [row for step in range(3, 6) for _, row in sampler.draws(step)]
  assert sorted(next_epoch) == list(range(12)) and next_epoch != epoch


def test_host_shards_are_disjoint_and_cover_the_global_batch(tmp_path):
  sources = {'a': _rows(tmp_path, 40), 'b': _rows(tmp_path, 7, offset=1000)}
  weights = {'a': 0.7, 'b': 0.3}
  whole = MixtureSampler(sources, weights, 8, seed=1)
  for step in range(6):
    shards = [MixtureSampler(sources, weights, 8, seed=1, process_index=i, process_count=4)
              .draws(step) for i in range(4)]
    assert [draw for shard in shards for draw in shard] == whole.draws(step)


@pytest.mark.parametrize('weights', [{'a': 0.5, 'b': 0.125, 'c': 0.375},
                                     {'a': 0.9, 'b': 0.05, 'c': 0.05}])
def test_mixture_proportions_match_the_weights(tmp_path, weights):
  sources = {name: _rows(tmp_path, n) for name, n in (('a', 50), ('b', 3), ('c', 17))}
  sampler = MixtureSampler(sources, weights, 32, seed=3)
  names = [name for step in range(200) for name, _ in sampler.draws(step)]  # 6,400 rows
  for name, weight in weights.items():
    assert names.count(name) / len(names) == pytest.approx(weight, abs=0.01)
  # Within any one cycle of 1,024 rows the mixture is exact, not just on average.
  first_cycle = [sampler.draw(row)[0] for row in range(1024)]
  assert first_cycle.count('b') == round(1024 * weights['b'])


def test_mixture_batch_stacks_rows_of_their_sources(tmp_path):
  sources = {'a': _rows(tmp_path, 5), 'b': _rows(tmp_path, 5, offset=1000)}
  sampler = MixtureSampler(sources, {'a': 1, 'b': 1}, 6, 0)
  batch = sampler.batch(2)['targets']
  assert {name for name, _ in sampler.draws(2)} == {'a', 'b'}
  for (name, row), got in zip(sampler.draws(2), batch):
    offset = 1000 if name == 'b' else 0
    np.testing.assert_array_equal(got, offset + np.arange(row * 4, row * 4 + 4))


def test_prefetched_batches_equal_the_batches_of_their_steps(tmp_path):
  sampler = _single(_rows(tmp_path, 9), 4, seed=5)
  read = list(prefetched(sampler, 3, 11, threads=3, buffer=2))
  assert len(read) == 8
  for step, batch in zip(range(3, 11), read):
    np.testing.assert_array_equal(batch['targets'], sampler.batch(step)['targets'])


def test_fingerprint_tells_data_apart(tmp_path):
  assert _single(_rows(tmp_path), 4, 0).fingerprint == _single(_rows(tmp_path), 4, 1).fingerprint
  other = _rows(tmp_path, offset=1)
  assert _single(other, 4, 0).fingerprint != _single(_rows(tmp_path), 4, 0).fingerprint


def test_empty_source_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="data source 'b' has no rows"):
    MixtureSampler({'a': _rows(tmp_path), 'b': _rows(tmp_path, 0)}, {'a': 1, 'b': 1}, 4, 0)


_MEMORY_PROBE = textwrap.dedent("""
    import re, sys
    import numpy as np
    from lamda_jax.data import packed
    from lamda_jax.data.sampler import MixtureSampler, prefetched
    stems, seq_len, load_all = sys.argv[1].split(','), int(sys.argv[2]), sys.argv[3] == '1'
    def peak_mib():  # VmHWM starts afresh at exec, unlike ru_maxrss (kept from the parent)
      status = open('/proc/self/status').read()
      return int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) / 1024
    rows = packed.PackedRows(stems, seq_len)
    rows.take([0])
    before = peak_mib()
    if load_all:  # what the old design did: every row in memory
      held = rows.take(range(len(rows)))
    sampler = MixtureSampler({'big': rows}, {'big': 1.0}, 64, seed=0)
    for batch in prefetched(sampler, 0, 200):
      assert batch['targets'].shape == (64, seq_len)
    print(peak_mib() - before)
""")


@pytest.mark.slow
def test_memory_stays_flat_on_a_corpus_larger_than_its_budget(tmp_path):
  """200 batches from ~290 MiB of rows grow the reader's peak by far less than
  the corpus; holding the rows, as the old pipeline did, would not fit."""
  seq_len, per_shard, shards = 256, 5_000, 10
  stems = []
  template = {field: np.ones(seq_len, packing.field_dtype(field)) for field in packing.FIELDS}
  for shard in range(shards):
    stems.append(str(tmp_path / f'{shard:05d}-of-{shards:05d}'))
    packed.write_shard(stems[-1], ({**template, 'targets': np.full(seq_len, r, np.int32)}
                                   for r in range(per_shard)))
  corpus_mib = shards * per_shard * len(packing.FIELDS) * seq_len * 4 / 2**20

  def growth(load_all):
    result = subprocess.run([sys.executable, '-c', _MEMORY_PROBE, ','.join(stems), str(seq_len),
                             '1' if load_all else '0'], capture_output=True, text=True,
                            check=True, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    return float(result.stdout.strip().splitlines()[-1])

  budget = corpus_mib / 4
  streamed, held = growth(load_all=False), growth(load_all=True)
  print(f'corpus {corpus_mib:.0f} MiB: peak grows {streamed:.1f} MiB reading it, {held:.1f} holding it')
  assert streamed < budget < held  # the probe can tell the two designs apart  # the probe can tell the two designs apart


def _sharded_rows(directory, sizes, seq_len=4, open_shards=64):
  """Shards of the given row counts; row r (over all shards) has targets r, r, ..."""
  stems, first = [], 0
  for index, size in enumerate(sizes):
    rows = []
    for r in range(first, first + size):
      row = {field: np.zeros(seq_len, packing.field_dtype(field)) for field in packing.FIELDS}
      row['targets'] = np.full(seq_len, r)
      rows.append(row)
    stems.append(os.path.join(directory, f'{index:05d}'))
    packed.write_shard(stems[-1], rows)
    first += size
  return packed.PackedRows(stems, seq_len, open_shards=open_shards)


def test_windowed_shuffle_is_a_fresh_bijection_each_epoch(tmp_path):
  sizes = [7, 0, 5, 9, 1, 6, 8, 3]  # uneven, one empty
  rows = _sharded_rows(tmp_path, sizes)
  sampler = MixtureSampler({'s': rows}, {'s': 1.0}, 13, seed=2, window_shards=3)
  epochs = [[sampler.draw(g)[1] for g in range(e * 39, (e + 1) * 39)] for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(39))  # every row once
  assert epochs[0] != epochs[1] != epochs[2]
  # What the rows hold is where the index points (row r's targets are r).
  batch = sampler.batch(1)['targets'][:, 0]
  assert batch.tolist() == [row for _, row in sampler.draws(1)]


def test_a_window_reads_only_its_shards(tmp_path):
  sizes = [10] * 12
  rows = _sharded_rows(tmp_path, sizes, open_shards=4)
  sampler = MixtureSampler({'s': rows}, {'s': 1.0}, 10, seed=0, window_shards=3)
  shard_of = np.repeat(np.arange(12), 10)
  for window in range(4):  # 30 rows per window of 3 shards
    draws = [sampler.draw(g)[1] for g in range(window * 30, (window + 1) * 30)]
    assert len({shard_of[d] for d in draws}) == 3
  for step in range(12):
    sampler.batch(step)
  assert len(rows._readers) <= 4  # pylint: disable=protected-access  # the bound on open shards


def test_hosts_reading_whole_streams_open_only_their_shards(tmp_path):
  """4 streams over 2 hosts: each host opens only its streams' shards of the big
  source, the small one (too few shards to split) is read by both, and
  together they read exactly the single host's batches."""
  big, small = [5, 9, 4, 7, 6, 3, 8, 5], [6]
  def sources(host):
    return {'big': _sharded_rows(tmp_path / f'{host}-big', big),
            'small': _sharded_rows(tmp_path / f'{host}-small', small)}
  weights = {'big': 0.75, 'small': 0.25}
  whole = MixtureSampler(sources('whole'), weights, 8, seed=3, window_shards=2, streams=4)
  hosts = [MixtureSampler(sources(i), weights, 8, seed=3, window_shards=2, streams=4,
                          process_index=i, process_count=2) for i in range(2)]
  assert [list(h.local_streams()) for h in hosts] == [[0, 1], [2, 3]]
  assert [h.local_shards()['big'] for h in hosts] == [[0, 1, 4, 5], [2, 3, 6, 7]]
  for step in range(30):  # several epochs of every stream
    np.testing.assert_array_equal(
        np.concatenate([h.batch(step)['targets'] for h in hosts]),
        whole.batch(step)['targets'])
  for host in hosts:
    assert host.sources['big'].opened == set(host.local_shards()['big'])
    assert host.sources['small'].opened == {0}
  assert whole.sources['big'].opened == set(range(8))


def test_each_stream_draws_its_shards_once_per_epoch_in_exact_proportion(tmp_path):
  sizes = [4, 6, 5, 3, 7, 2]
  shard_of = np.repeat(np.arange(6), sizes)
  sources = {'a': _sharded_rows(tmp_path / 'a', sizes),
             'b': _sharded_rows(tmp_path / 'b', [50], seq_len=4)}
  sampler = MixtureSampler(sources, {'a': 0.5, 'b': 0.5}, 6, seed=0, streams=3)
  per_stream = {stream: [] for stream in range(3)}
  for step in range(2 * 1024 // 2):  # two cycles of every stream (2 rows per step each)
    for position in range(6):
      per_stream[position // 2].append(sampler.draw(step * 6 + position))
  for stream, draws in per_stream.items():
    owned = [r for r in range(sum(sizes)) if shard_of[r] % 3 == stream]
    rows = [row for name, row in draws if name == 'a']
    assert len(rows) == 1024  # half of each 1,024-row cycle, exactly
    first_epoch = rows[:len(owned)]
    assert sorted(first_epoch) == owned  # only its own shards, each row once
    second = rows[len(owned):2 * len(owned)]
    assert sorted(second) == owned and second != first_epoch


def test_streams_that_do_not_divide_the_batch_are_an_error(tmp_path):
  with pytest.raises(ValueError, match='global batch 6 does not split into 4 streams'):
    MixtureSampler({'a': _rows(tmp_path)}, {'a': 1}, 6, 0, streams=4)


def test_fingerprint_names_the_streams(tmp_path):
  rows = _rows(tmp_path)
  one, two = (MixtureSampler({'a': rows}, {'a': 1}, 4, 0, streams=s) for s in (1, 2))
  assert one.fingerprint != two.fingerprint
  assert two.state(5)['streams'] == 2


def test_rows_outside_the_source_are_an_error(tmp_path):
  with pytest.raises(IndexError, match=r'rows 0\.\.5 outside 0\.\.4'):
    _sharded_rows(tmp_path, [2, 3]).take([0, 5])


@pytest.mark.parametrize('size', [1, 3, sampler_lib.SMALL_DOMAIN, sampler_lib.SMALL_DOMAIN + 5])
def test_bijection_permutes_small_and_large_domains(size):
  """Cached permutations below SMALL_DOMAIN, Grain's index_shuffle above: both permute."""
  for seed in (0, 7):
    mapped = [sampler_lib.bijection(i, size, seed) for i in range(size)]
    assert sorted(mapped) == list(range(size))
  if size > 3:
    assert mapped != list(range(size))
    assert mapped != [sampler_lib.bijection(i, size, 0) for i in range(size)]
