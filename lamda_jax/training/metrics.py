"""Run metrics: a JSONL file, TensorBoard event files and a progress bar.

Written by process 0 only. On resume the JSONL file is cut back to the restored
step (records after it were not in the checkpoint and are replayed), so it
always reads as one uninterrupted run.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import tensorboardX
import tqdm


def measure_peak_flops(dtype: str, size: int = 2048, repeats: int = 10) -> float:
  """FLOP/s of one device on a large matmul accumulated in f32, as the model's
  projections are: the denominator of MFU when the config gives no peak. The
  fastest of `repeats` runs, since a shared machine only ever slows one down."""
  x = jnp.ones((size, size), dtype)
  matmul = jax.jit(lambda a: jnp.matmul(a, a, preferred_element_type=jnp.float32))
  matmul(x).block_until_ready()
  fastest = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(x).block_until_ready()
    fastest = min(fastest, time.perf_counter() - start)
  return 2 * size**3 / fastest


class MetricsWriter:

  def __init__(self, workdir: str, total_steps: int, start_step: int):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self.jsonl_path = os.path.join(workdir, 'metrics.jsonl')
    self._truncate_after(start_step)
    self.jsonl = open(self.jsonl_path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    self.tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))
    self.progress = tqdm.tqdm(total=total_steps, initial=start_step, unit='step', desc='Train',
                              dynamic_ncols=True, mininterval=1.0)

  def _truncate_after(self, step: int):
    if not os.path.exists(self.jsonl_path):
      return
    with open(self.jsonl_path, encoding='utf-8') as f:
      kept = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
    with open(self.jsonl_path, 'w', encoding='utf-8') as f:
      f.writelines(kept)

  def write(self, step: int, scalars: dict):
    if not self.enabled:
      return
    self.jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
    for name, value in scalars.items():
      self.tensorboard.add_scalar(name, value, step)

  def show(self, step: int, **postfix):
    if self.enabled:
      self.progress.update(step - self.progress.n)
      self.progress.set_postfix({k: f'{v:.4g}' for k, v in postfix.items()}, refresh=False)

  def flush(self):
    if self.enabled:
      self.jsonl.flush()
      self.tensorboard.flush()

  def close(self):
    if self.enabled:
      self.flush()
      self.jsonl.close()
      self.tensorboard.close()
      self.progress.close()
