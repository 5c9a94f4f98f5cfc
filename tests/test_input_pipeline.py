"""Packing, the step-indexed sampler and the train/eval split."""

import numpy as np
import pytest

from lamda_jax.data import packing
from lamda_jax.data.sampler import MixtureSampler


def test_pack_worked_example():
  examples = [packing.Example((11, 12, 13), (1.0, 1.0, 1.0)),
              packing.Example((21, 22), (0.0, 1.0), task_id=1),
              packing.Example((31, 32, 33, 34), (1.0, 1.0, 1.0, 1.0))]
  rows = packing.pack(examples, seq_len=6)
  np.testing.assert_array_equal(rows['targets'], [[11, 12, 13, 21, 22, 0], [31, 32, 33, 34, 0, 0]])
  np.testing.assert_array_equal(rows['inputs'], [[0, 11, 12, 0, 21, 0], [0, 31, 32, 33, 0, 0]])
  np.testing.assert_array_equal(rows['segment_ids'], [[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 0, 0]])
  np.testing.assert_array_equal(rows['positions'], [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 0]])
  np.testing.assert_array_equal(rows['loss_weights'], [[1, 1, 1, 0, 1, 0], [1, 1, 1, 1, 0, 0]])
  np.testing.assert_array_equal(rows['task_ids'], [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]])
  assert packing.efficiency(rows) == pytest.approx(9 / 12)


def test_unpacking_gives_back_the_examples():
  rng = np.random.default_rng(0)
  examples = [packing.Example(tuple(int(t) for t in rng.integers(3, 99, n)), (1.0,) * n)
              for n in rng.integers(1, 17, 50)]
  rows = packing.pack(examples, seq_len=16)
  unpacked = [tuple(int(t) for t in rows['targets'][r][rows['segment_ids'][r] == s])
              for r in range(len(rows['targets'])) for s in range(1, rows['segment_ids'][r].max() + 1)]
  assert unpacked == [e.tokens for e in examples]


def test_pack_rejects_an_example_longer_than_a_row():
  with pytest.raises(ValueError, match='example of 5 tokens exceeds seq_len 4'):
    packing.pack([packing.Example((1, 2, 3, 4, 5), (1.0,) * 5)], seq_len=4)


def _rows(n=10, seq_len=4, offset=0):
  return {'targets': offset + np.arange(n * seq_len).reshape(n, seq_len)}


def _single(rows, batch, seed, **hosts):
  return MixtureSampler({'only': rows}, {'only': 1.0}, batch, seed, **hosts)


def test_sampler_batches_are_a_pure_function_of_the_step():
  first, second = _single(_rows(), 4, seed=7), _single(_rows(), 4, seed=7)
  for step in (5, 0, 3, 100, 3):
    np.testing.assert_array_equal(first.batch(step)['targets'], second.batch(step)['targets'])
  assert not np.array_equal(_single(_rows(), 4, seed=8).batch(0)['targets'],
                            first.batch(0)['targets'])


def test_sampler_visits_every_row_once_per_epoch():
  sampler = _single(_rows(12), 4, seed=0)
  epoch = [row for step in range(3) for _, row in sampler.draws(step)]
  assert sorted(epoch) == list(range(12))
  next_epoch = [row for step in range(3, 6) for _, row in sampler.draws(step)]
  assert sorted(next_epoch) == list(range(12)) and next_epoch != epoch


def test_host_shards_are_disjoint_and_cover_the_global_batch():
  sources = {'a': _rows(40), 'b': _rows(7, offset=1000)}
  weights = {'a': 0.7, 'b': 0.3}
  whole = MixtureSampler(sources, weights, 8, seed=1)
  for step in range(6):
    shards = [MixtureSampler(sources, weights, 8, seed=1, process_index=i, process_count=4)
              .draws(step) for i in range(4)]
    assert [draw for shard in shards for draw in shard] == whole.draws(step)


@pytest.mark.parametrize('weights', [{'a': 0.5, 'b': 0.125, 'c': 0.375},
                                     {'a': 0.9, 'b': 0.05, 'c': 0.05}])
def test_mixture_proportions_match_the_weights(weights):
  sources = {name: _rows(n) for name, n in (('a', 50), ('b', 3), ('c', 17))}
  sampler = MixtureSampler(sources, weights, 32, seed=3)
  names = [name for step in range(200) for name, _ in sampler.draws(step)]  # 6,400 rows
  for name, weight in weights.items():
    assert names.count(name) / len(names) == pytest.approx(weight, abs=0.01)
  # Within any one cycle of 1,024 rows the mixture is exact, not just on average.
  first_cycle = [sampler.draw(row)[0] for row in range(1024)]
  assert first_cycle.count('b') == round(1024 * weights['b'])


def test_mixture_batch_stacks_rows_of_their_sources():
  sampler = MixtureSampler({'a': _rows(5), 'b': _rows(5, offset=1000)}, {'a': 1, 'b': 1}, 6, 0)
  batch = sampler.batch(2)['targets']
  for (name, row), got in zip(sampler.draws(2), batch):
    np.testing.assert_array_equal(got, sampler.sources[name]['targets'][row])


def test_fingerprint_tells_data_apart():
  assert _single(_rows(), 4, 0).fingerprint == _single(_rows(), 4, 1).fingerprint
  other = _rows()
  other['targets'][3, 2] += 1
  assert _single(other, 4, 0).fingerprint != _single(_rows(), 4, 0).fingerprint


def test_empty_source_is_an_error():
  with pytest.raises(ValueError, match="data source 'b' has no rows"):
    MixtureSampler({'a': _rows(), 'b': _rows(0)}, {'a': 1, 'b': 1}, 4, 0)
