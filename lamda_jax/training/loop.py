"""`--mode train`: the one train loop, for pre-training and fine-tuning alike.

Each step: fetch the step's batch (a pure function of the step), run the jitted
sharded update, keep its metrics on the device. Every `log_every` steps and
before every checkpoint the host syncs once: it writes the metrics, stops on a
non-finite step, and reports tokens/s and MFU. SIGTERM (a TPU preemption)
saves a checkpoint at the current step and exits cleanly.
"""

import math
import signal
import threading
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from lamda_jax.config import ConfigError, ExperimentConfig
from lamda_jax.data import pipeline
from lamda_jax.data import sampler as sampler_lib
from lamda_jax.model import stats
from lamda_jax.training import metrics as metrics_lib
from lamda_jax.training import trainer as trainer_lib
from lamda_jax.training.checkpointing import Checkpointer

_SIGTERM = threading.Event()


class TrainingDiverged(RuntimeError):
  """A step's loss or gradients were not finite."""


def _preemption_requested(step: int) -> bool:
  if jax.process_count() > 1:  # every host must agree on the step to stop at
    return multihost_utils.reached_preemption_sync_point(step)
  return _SIGTERM.is_set()


def _check_resumed_data(data_state: dict, sampler, step: int):
  if data_state.get('streams', 1) != sampler.streams:
    raise ValueError(f'The checkpoint at step {step} was written with data.streams='
                     f'{data_state.get("streams", 1)}, this run has {sampler.streams}; the '
                     'batches are made per stream, so resuming would not replay them.')
  if data_state['fingerprint'] != sampler.fingerprint:
    raise ValueError(f'The checkpoint at step {step} was written with different training data '
                     f'(fingerprint {data_state["fingerprint"]}, now {sampler.fingerprint}); '
                     'resuming would not replay the same batches.')
  if data_state['next_step'] != step:
    raise ValueError(f'Checkpoint data position {data_state["next_step"]} != state step {step}')


def _per_task(prefix: str, sums: dict, tasks) -> dict:
  """Loss and accuracy of each task present, when the batch can mix several."""
  results = {}
  for task, (loss, correct, weight) in enumerate(zip(
      sums['task_loss'], sums['task_correct'], sums['task_weight'])):
    if weight > 0 and len(tasks) > 1:
      results[f'{prefix}{tasks[task]}/loss'] = float(loss / weight)
      results[f'{prefix}{tasks[task]}/accuracy'] = float(correct / weight)
  return results


class _Logger:
  """Turns the device-side metrics of the last few steps into logged scalars."""

  def __init__(self, experiment: ExperimentConfig, writer, peak_flops: float):
    self.cfg, self.writer = experiment.train, writer
    self.flops_per_token = stats.flops_per_token(experiment.model, self.cfg.seq_len)[
        'flops_per_token']
    self.peak_flops = peak_flops * jax.device_count()
    self.restart_clock()

  def restart_clock(self, exclude_steps: int = 0):
    """Throughput counts from now; `exclude_steps` already pending ran before it."""
    self.clock, self.steps_since = time.perf_counter(), -exclude_steps

  def log(self, pending) -> dict:
    host = jax.device_get([metrics for _, metrics in pending])
    for (step, _), values in zip(pending, host):
      if not values['finite']:
        raise TrainingDiverged(
            f'Step {step + 1}: loss {values["loss"]} or gradient norm {values["grad_norm"]} is not '
            'finite; the update was not applied and the run stops here. The last checkpoint '
            'is intact.')
      scalars = {name: float(values[name]) for name in
                 ('loss', 'z_loss', 'grad_norm', 'learning_rate', 'tokens')}
      scalars.update(_per_task('', values, self.cfg.tasks))
      self.writer.write(step + 1, scalars)
    self.steps_since += len(pending)
    last_step, throughput = pending[-1][0] + 1, {}
    if self.steps_since > 0:  # not only the step that compiled
      seconds = time.perf_counter() - self.clock
      tokens_per_second = self.steps_since * self.cfg.batch_size * self.cfg.seq_len / seconds
      throughput = {'tokens_per_second': tokens_per_second,
                    'mfu': self.flops_per_token * tokens_per_second / self.peak_flops}
      self.writer.write(last_step, throughput)
    self.writer.show(last_step, loss=scalars['loss'], **throughput)
    self.writer.flush()
    self.restart_clock()
    return {**scalars, **throughput}


def evaluate(eval_fn, params, sampler, batches: int, to_device, tasks) -> dict:
  """Loss, perplexity and accuracy on held-out batches; per task when there are several."""
  totals = None
  for index in range(batches):  # the same held-out batches every time
    sums = jax.device_get(eval_fn(params, to_device(sampler.batch(index))))
    totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
  loss = float(totals['loss'] / max(totals['weight'], 1.0))
  return {'eval/loss': loss, 'eval/perplexity': math.exp(min(loss, 50.0)),
          'eval/accuracy': float(totals['task_correct'].sum() / max(totals['weight'], 1.0)),
          **_per_task('eval/', totals, tasks)}


def start_from(run_dir: str, state, abstract, experiment, keep_optimizer_state: bool):
  """`state` with the parameters of `run_dir`'s latest checkpoint (and its
  optimizer state if `keep_optimizer_state`).

  Parameters only one side has (discriminator heads added to a pre-trained
  run, or left out of a run that had them) keep this run's initialisation or
  are not read; there is then no optimizer state to keep for them.
  """
  checkpointer = Checkpointer(run_dir, experiment.train, read_only=True)
  saved = checkpointer.saved_param_names()
  same = saved is None or saved == set(state.params)
  if not same:
    if keep_optimizer_state:
      raise ConfigError(
          f'config.finetune.keep_optimizer_state: {run_dir} has parameters '
          f'{sorted(saved ^ set(state.params))} where this run differs, so its optimizer '
          'state does not fit this model; set it to False')
    logging.info('Starting from %s without %s (initialised here) and %s (not read).', run_dir,
                 sorted(set(state.params) - saved), sorted(saved - set(state.params)))
  restored = (checkpointer.restore_latest(abstract) if same else checkpointer.restore_latest_params(
      {name: shape for name, shape in abstract.params.items() if name in saved}))
  if restored is None:
    raise FileNotFoundError(f'config.finetune.init_from: no readable checkpoint in '
                            f'{run_dir}/checkpoints')
  if not same:
    return state.replace(params={**state.params, **restored})
  restored = restored[0]
  logging.info('Restored %s at step %d.', run_dir, int(restored.step))
  return state.replace(params=restored.params, opt_state=(
      restored.opt_state if keep_optimizer_state else state.opt_state))


def run(experiment: ExperimentConfig, workdir: str, datasets=None, init_from: str = '',
        keep_optimizer_state: bool = False) -> dict:
  """Trains to `train.steps`, resuming from the workdir's latest checkpoint.

  A fresh run starts from the parameters of `init_from`'s latest checkpoint
  when given (with its optimizer state if `keep_optimizer_state`, else a
  fresh one; the step count starts at 0 either way), else from a random
  initialisation.
  """
  cfg = experiment.train
  trainer = trainer_lib.set_up(experiment)
  datasets = datasets or pipeline.build(experiment, workdir)
  logging.info('Mesh %s; %d devices on %d hosts.', dict(trainer.mesh.shape), jax.device_count(),
               jax.process_count())

  with trainer.activated():
    checkpointer = Checkpointer(workdir, cfg)
    restored = checkpointer.restore_latest(trainer.abstract)
    if restored is None:
      state = trainer.initial_state()
      if init_from:
        state = start_from(init_from, state, trainer.abstract, experiment, keep_optimizer_state)
    else:
      state, data_state = restored
      _check_resumed_data(data_state, datasets.train, int(state.step))
      logging.info('Resumed from step %d.', int(state.step))

    start = int(state.step)
    writer = metrics_lib.MetricsWriter(workdir, cfg.steps, start)
    peak = cfg.peak_flops_per_device or metrics_lib.measure_peak_flops(experiment.model.dtype)
    logger = _Logger(experiment, writer, peak)
    summary = {'start_step': start, 'packing_efficiency': datasets.packing_efficiency,
               'bad_records': datasets.bad_records, 'loss_curve': {}}
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: _SIGTERM.set())
    try:
      pending = []
      batches = sampler_lib.prefetched(datasets.train, start, cfg.steps,
                                       experiment.data.read_threads, experiment.data.read_ahead)
      for step in range(start, cfg.steps):
        state, step_metrics = trainer.update(state, trainer.to_device(next(batches)))
        pending.append((step, step_metrics))
        if step == start:  # leave compilation out of the throughput
          jax.block_until_ready(step_metrics)
          logger.restart_clock(exclude_steps=1)
        done = step + 1
        preempted = _preemption_requested(done)
        save = checkpointer.should_save(done) or done == cfg.steps or preempted
        if done % cfg.log_every == 0 or save:
          summary.update(logger.log(pending))
          summary['loss_curve'][done] = round(summary['loss'], 4)
          pending = []
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps):
          results = evaluate(trainer.evaluate, state.params, datasets.eval, cfg.eval_batches,
                             trainer.to_device, cfg.tasks)
          writer.write(done, results)
          summary.update(results)
        if save:
          checkpointer.save(done, state, datasets.train.state(done))
        if preempted:
          logging.warning('SIGTERM: saved a checkpoint at step %d and stopping.', done)
          summary['preempted'] = True
          break
    finally:
      signal.signal(signal.SIGTERM, previous_handler)
      checkpointer.close()
      writer.close()
  summary['final_step'] = int(state.step)
  return summary
