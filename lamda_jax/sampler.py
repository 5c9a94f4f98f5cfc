"""A stateless, step-indexed batch sampler (as Levanter's and Grain's).

The batch at step s is a pure function of (seed, s): rows are visited in a
fresh seeded permutation each epoch. Resuming needs only the step, so a
restarted run sees exactly the batches it would have seen.
"""

import functools
import hashlib

import numpy as np


class StepSampler:

  def __init__(self, rows: dict[str, np.ndarray], global_batch: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    self.rows = rows
    self.num_rows = len(next(iter(rows.values())))
    if global_batch % process_count:
      raise ValueError(f'global batch {global_batch} does not split over {process_count} hosts')
    self.global_batch, self.seed = global_batch, seed
    self.local_batch = global_batch // process_count
    self.local_offset = process_index * self.local_batch
    self._permutations = {}

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      self._permutations = {epoch: np.random.default_rng([self.seed, epoch]).permutation(
          self.num_rows)}
    return self._permutations[epoch]

  def indices(self, step: int) -> np.ndarray:
    """Row indices of this host's slice of the global batch at `step`."""
    first = step * self.global_batch + self.local_offset
    flat = np.arange(first, first + self.local_batch)
    return np.array([self._permutation(i // self.num_rows)[i % self.num_rows] for i in flat])

  def batch(self, step: int) -> dict[str, np.ndarray]:
    indices = self.indices(step)
    return {name: array[indices] for name, array in self.rows.items()}

  @functools.cached_property
  def fingerprint(self) -> str:
    """Identifies the data, so a resume onto different data is caught."""
    digest = hashlib.sha256()
    for name in sorted(self.rows):
      digest.update(name.encode())
      digest.update(np.ascontiguousarray(self.rows[name]).tobytes())
    return digest.hexdigest()[:16]

  def state(self, next_step: int) -> dict:
    """What a checkpoint records of the input position."""
    return {'next_step': next_step, 'seed': self.seed, 'global_batch': self.global_batch,
            'fingerprint': self.fingerprint}
