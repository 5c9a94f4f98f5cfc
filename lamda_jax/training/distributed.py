"""Multi-host start-up: `jax.distributed.initialize` before any computation."""

import jax

from lamda_jax.config import DistributedConfig


def initialize(cfg: DistributedConfig):
  """Joins the processes of a multi-host run; a no-op on a single host."""
  if not cfg.enabled:
    return
  # CPU hosts need a collectives backend (TPU and GPU bring their own).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  arguments = {'coordinator_address': cfg.coordinator_address or None,
               'num_processes': None if cfg.num_processes < 0 else cfg.num_processes,
               'process_id': None if cfg.process_id < 0 else cfg.process_id}
  jax.distributed.initialize(**arguments)
