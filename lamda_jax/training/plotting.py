"""Curves of one or more runs from their `metrics.jsonl`, as one PNG.

Comparing runs without TensorBoard: training and held-out loss, accuracy per
task (held out when the run evaluated, else on its training batches) and
throughput, each run in its own colour. TensorBoard files are still written.
"""

import json
import os

import matplotlib

matplotlib.use('Agg')  # files only: no display on a TPU VM or in CI
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

PANELS = ('loss', 'accuracy', 'tokens_per_second')


def read_metrics(run_dir: str) -> list[dict]:
  path = os.path.join(run_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{run_dir}: no metrics.jsonl (not a run\'s workdir?)')
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


def curves(records: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
  """panel -> series name -> (steps, values) of one run's records."""
  found = {panel: {} for panel in PANELS}
  for record in records:
    for name, value in record.items():
      if name == 'step' or not isinstance(value, (int, float)):
        continue
      if name in ('loss', 'eval/loss'):
        panel = 'loss'
      elif name.endswith('/accuracy') or name == 'eval/accuracy':
        panel = 'accuracy'
      elif name == 'tokens_per_second':
        panel = 'tokens_per_second'
      else:
        continue
      steps, values = found[panel].setdefault(name, ([], []))
      steps.append(record['step'])
      values.append(value)
  held_out = {name: series for name, series in found['accuracy'].items()
              if name.startswith('eval/')}
  if held_out:  # one training batch's accuracy per task is mostly noise beside it
    found['accuracy'] = held_out
  return found


def plot_runs(run_dirs, output: str):
  """One PNG with a panel per quantity and a line per (run, series); returns the figure."""
  figure, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 4.5))
  for run_index, run_dir in enumerate(run_dirs):
    colour = f'C{run_index % 10}'
    label = os.path.basename(os.path.normpath(run_dir))
    for axis, series in zip(axes, curves(read_metrics(run_dir)).values()):
      for style, (name, (steps, values)) in zip(('-', '--', ':', '-.') * 8, sorted(series.items())):
        axis.plot(steps, values, style, color=colour, label=f'{label}: {name}')
  for axis, panel in zip(axes, PANELS):
    axis.set_xlabel('step')
    axis.set_title(panel.replace('_', ' '))
    if axis.lines:
      axis.legend(fontsize='x-small')
  axes[0].set_yscale('log')
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  figure.savefig(output, dpi=100)
  return figure
