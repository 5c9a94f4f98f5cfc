"""Orbax checkpoints of the train state and the input position.

Saves are asynchronous and atomic: Orbax writes into a temporary directory and
renames it on commit, so a crash mid-save leaves the previous checkpoints as
they were and the partial one is never picked up. On restore a checkpoint that
cannot be read is moved aside (to `<step>.unreadable`, kept for inspection)
with a warning, in favour of the one before it. Restoring onto another mesh
works: arrays are read into the shardings asked for.
"""

import os

from absl import logging
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from lamda_jax.config import TrainConfig


class Checkpointer:

  def __init__(self, workdir: str, cfg: TrainConfig, read_only: bool = False):
    """`read_only` opens another run's checkpoints (to start from) without touching them."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=cfg.keep_checkpoints, enable_async_checkpointing=True,
        cleanup_tmp_directories=not read_only, read_only=read_only)
    self.read_only = read_only
    self.every = cfg.checkpoint_every
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def should_save(self, step: int) -> bool:
    return step % self.every == 0

  def save(self, step: int, state, data_state: dict):
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=True)

  def restore_latest(self, abstract_state):
    """(state, data_state) of the newest readable checkpoint, or None if there is none."""
    restored = self._restore_newest(ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    return None if restored is None else (restored.state, restored.data)

  def restore_latest_params(self, abstract_params):
    """Only the parameters of the newest readable checkpoint (None if there is
    none), read straight into the dtypes and shardings of `abstract_params`:
    the optimizer state is never loaded."""
    item = {'params': abstract_params}
    restored = self._restore_newest(ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True)))
    return None if restored is None else restored.state['params']

  def saved_param_names(self) -> set[str] | None:
    """The top-level parameter names of the newest checkpoint (None if there
    is none), from its metadata: what a restore would find, before trying it."""
    steps = self.manager.all_steps()
    if not steps:
      return None
    try:
      tree = ocp.PyTreeCheckpointer().metadata(
          os.path.join(self.directory, str(max(steps)), 'state')).item_metadata
    except Exception:  # pylint: disable=broad-except  # unreadable: restoring skips it
      return None
    return set(tree['params'])

  def _restore_newest(self, args):
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=args)
      except Exception as error:  # pylint: disable=broad-except  # any unreadable checkpoint
        logging.warning('Checkpoint %s/%d is unreadable (%s: %s); trying the previous one.',
                        self.directory, step, type(error).__name__, error)
        if not self.read_only:
          logging.warning('Moved it to %s/%d.unreadable.', self.directory, step)
          self._move_aside(step)
        continue
      return restored
    return None

  def _move_aside(self, step: int):
    """Out of the way of a new save of the same step, but not deleted."""
    if jax.process_index() == 0:
      path = os.path.join(self.directory, str(step))
      os.replace(path, f'{path}.unreadable')
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'moved aside checkpoint {step}')
    self.manager.reload()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
