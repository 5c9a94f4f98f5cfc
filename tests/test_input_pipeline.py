"""Packing, the step-indexed sampler and the train/eval split."""

import numpy as np
import pytest

from lamda_jax import input_pipeline
from lamda_jax import packing
from lamda_jax.sampler import StepSampler


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


def _rows(n=10, seq_len=4):
  return {'targets': np.arange(n * seq_len).reshape(n, seq_len)}


def test_sampler_batches_are_a_pure_function_of_the_step():
  first, second = StepSampler(_rows(), 4, seed=7), StepSampler(_rows(), 4, seed=7)
  for step in (5, 0, 3, 100, 3):
    np.testing.assert_array_equal(first.batch(step)['targets'], second.batch(step)['targets'])
  assert not np.array_equal(StepSampler(_rows(), 4, seed=8).batch(0)['targets'],
                            first.batch(0)['targets'])


def test_sampler_visits_every_row_once_per_epoch():
  sampler = StepSampler(_rows(12), 4, seed=0)
  epoch = np.concatenate([sampler.indices(step) for step in range(3)])
  assert sorted(epoch) == list(range(12))
  next_epoch = np.concatenate([sampler.indices(step) for step in range(3, 6)])
  assert sorted(next_epoch) == list(range(12)) and list(next_epoch) != list(epoch)


def test_host_shards_are_disjoint_and_cover_the_global_batch():
  whole = StepSampler(_rows(40), 8, seed=1)
  for step in range(6):
    shards = [StepSampler(_rows(40), 8, seed=1, process_index=i, process_count=4).indices(step)
              for i in range(4)]
    np.testing.assert_array_equal(np.concatenate(shards), whole.indices(step))
    assert len(set(np.concatenate(shards))) == 8


def test_fingerprint_tells_data_apart():
  assert StepSampler(_rows(), 4, 0).fingerprint == StepSampler(_rows(), 4, 1).fingerprint
  other = _rows()
  other['targets'][3, 2] += 1
  assert StepSampler(other, 4, 0).fingerprint != StepSampler(_rows(), 4, 0).fingerprint


def test_eval_documents_never_appear_in_training():
  train_docs, eval_docs = input_pipeline.split_documents()
  assert eval_docs and train_docs and not set(train_docs) & set(eval_docs)
