"""A full batch of random tokens for a config: what the benchmarks time the
train step on, with no data pipeline in the way."""

import numpy as np


def full_batch(experiment):
  shape = (experiment.train.batch_size, experiment.train.seq_len)
  tokens = np.random.default_rng(0).integers(3, experiment.model.vocab_size, shape, np.int32)
  return {'inputs': tokens, 'targets': tokens, 'loss_weights': np.ones(shape, np.float32),
          'segment_ids': np.ones(shape, np.int32),
          'positions': np.broadcast_to(np.arange(shape[1], dtype=np.int32), shape),
          'task_ids': np.zeros(shape, np.int32)}
