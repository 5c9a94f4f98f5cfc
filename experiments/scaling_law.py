"""A scaling-law sweep at CPU scale: held-out loss against model size and compute,
fitted with Kaplan et al.'s (2020) power laws.

  python -m experiments.scaling_law --config configs/tiny.py --workdir runs/scaling

Each size (`--sizes`, layers x d_model; head_dim from the config, d_ff = 4 x
d_model) trains once on the config's mixture (experiments/sweep.py: one
prepared copy, the same batches) for the largest data budget (`--budgets`, in
steps), and its held-out loss is read at every budget. The config's schedule
must not depend on the total steps ('rsqrt' or 'constant'), so the loss at
step S is that of a run trained for S steps, as in Kaplan's L(N, S).

Fits, by least squares on log L (`fit_power_law`):
- L(N) = (N_c / N)^alpha_N over the sizes at the largest budget, N the
  non-embedding parameters;
- L(C) = (C_c / C)^alpha_C over the compute frontier (`frontier`: the
  points no cheaper point beats), C = 6 N D FLOPs, D the tokens seen.
`scaling.json` holds the exponents with their standard errors and RMS error in
log L, and every point; `loss_vs_params.png` and `loss_vs_compute.png` plot
them with the fits.
"""

import dataclasses
import json
import math
import os

from absl import flags
import matplotlib.pyplot as plt
import numpy as np

from experiments import outputs, sweep
from lamda_jax import config as config_lib
from lamda_jax.model import stats
from lamda_jax.training import plotting  # plotting: a file-only matplotlib

_SIZES = flags.DEFINE_list('sizes', ['2x32', '2x64', '3x96', '4x128', '6x192'],
                           'Model sizes as layers x d_model.')
_BUDGETS = flags.DEFINE_list('budgets', ['100', '200', '400'],
                             'Data budgets in train steps, each a multiple of the first.')
KAPLAN = {'alpha_N': 0.076, 'alpha_C': 0.050}  # Kaplan et al. 2020, eq. 1.1 and 1.3
STEP_INDEPENDENT_SCHEDULES = ('rsqrt', 'constant')


def fit_power_law(x, loss) -> dict:
  """loss = (x_c / x)^alpha, fitted as the line log L = alpha log x_c - alpha log x."""
  log_x, log_loss = np.log(np.asarray(x, float)), np.log(np.asarray(loss, float))
  if len(log_x) < 2 or np.ptp(log_x) == 0:
    raise ValueError(f'a power law needs two or more distinct x, got {list(x)}')
  slope, intercept = np.polyfit(log_x, log_loss, 1)
  residuals = log_loss - (slope * log_x + intercept)
  spread = np.sum((log_x - log_x.mean()) ** 2)
  stderr = math.sqrt(np.sum(residuals ** 2) / (len(log_x) - 2) / spread) if len(log_x) > 2 else 0.
  alpha = -slope
  log_x_c = intercept / alpha if alpha else math.inf  # a flat loss puts x_c at infinity
  return {'alpha': float(alpha), 'alpha_stderr': float(stderr), 'log_x_c': float(log_x_c),
          'x_c': math.exp(log_x_c) if log_x_c < 700 else math.inf,
          'rms_log_error': float(np.sqrt(np.mean(residuals ** 2)))}


def frontier(points: list[dict]) -> list[dict]:
  """The compute-efficient points: by increasing compute, each with a loss below
  every cheaper point's."""
  best, kept = math.inf, []
  for point in sorted(points, key=lambda p: (p['compute'], p['eval_loss'])):
    if point['eval_loss'] < best:
      best = point['eval_loss']
      kept.append(point)
  return kept


def size_variants(experiment: config_lib.ExperimentConfig, sizes, budgets) -> dict:
  """'<layers>x<d_model>' -> that model, trained to the largest budget and
  evaluated at every one."""
  train = experiment.train
  if train.schedule not in STEP_INDEPENDENT_SCHEDULES:
    raise config_lib.ConfigError(
        f'config.train.schedule: {train.schedule!r} depends on the total steps, so a loss read '
        f'at a smaller budget is not that budget\'s run; use one of {STEP_INDEPENDENT_SCHEDULES}')
  if any(budget % budgets[0] for budget in budgets):
    raise ValueError(f'--budgets: each must be a multiple of the first, got {budgets}')
  variants = {}
  for size in sizes:
    layers, d_model = (int(part) for part in size.split('x'))
    heads = max(d_model // experiment.model.head_dim, 1)
    model = dataclasses.replace(experiment.model, num_layers=layers, d_model=d_model,
                                num_heads=heads, head_dim=d_model // heads, d_ff=4 * d_model)
    variants[size] = dataclasses.replace(
        experiment, name=f'{experiment.name}_{size}', model=model,
        train=dataclasses.replace(train, steps=budgets[-1], eval_every=budgets[0],
                                  checkpoint_every=budgets[-1]))
  return variants


def run(experiment: config_lib.ExperimentConfig, workdir: str, sizes, budgets) -> dict:
  budgets = sorted(int(budget) for budget in budgets)
  outputs.write_config(workdir, experiment)
  variants = size_variants(experiment, sizes, budgets)
  sweep.train_variants(variants, workdir)
  tokens_per_step = experiment.train.batch_size * experiment.train.seq_len
  points = []
  for size, variant in variants.items():
    params = stats.describe(variant)['params_non_embedding']
    held_out = {record['step']: record['eval/loss']
                for record in plotting.read_metrics(os.path.join(workdir, size))
                if 'eval/loss' in record}
    for budget in budgets:
      tokens = budget * tokens_per_step
      points.append({'size': size, 'params': params, 'steps': budget, 'tokens': tokens,
                     'compute': 6 * params * tokens, 'eval_loss': held_out[budget]})
  largest = [p for p in points if p['steps'] == budgets[-1]]
  efficient = frontier(points)
  results = {
      'L(N)': fit_power_law([p['params'] for p in largest], [p['eval_loss'] for p in largest]),
      'L(C)': fit_power_law([p['compute'] for p in efficient],
                            [p['eval_loss'] for p in efficient]),
      'kaplan': KAPLAN, 'points': points, 'frontier': [p['size'] + f'@{p["steps"]}'
                                                       for p in efficient]}
  with open(os.path.join(workdir, 'scaling.json'), 'w', encoding='utf-8') as f:
    json.dump(results, f, indent=1)
  plot(results, budgets, workdir)
  return results


def _fitted(fit, x):
  return np.exp(fit['alpha'] * (fit['log_x_c'] - np.log(np.asarray(x, float))))


def plot(results: dict, budgets, workdir: str):
  points = results['points']
  figure, axis = plt.subplots(figsize=(6, 4.5))
  for budget in budgets:
    at = [p for p in points if p['steps'] == budget]
    axis.plot([p['params'] for p in at], [p['eval_loss'] for p in at], 'o-',
              label=f'{budget} steps ({at[0]["tokens"]:,} tokens)')
  params = sorted({p['params'] for p in points})
  fit = results['L(N)']
  axis.plot(params, _fitted(fit, params), 'k--',
            label=f'(N_c/N)^{fit["alpha"]:.3f} (Kaplan: {KAPLAN["alpha_N"]})')
  _finish(figure, axis, 'non-embedding parameters N', os.path.join(workdir, 'loss_vs_params.png'))

  figure, axis = plt.subplots(figsize=(6, 4.5))
  axis.plot([p['compute'] for p in points], [p['eval_loss'] for p in points], 'o', alpha=0.4,
            label='every (size, budget)')
  efficient = frontier(points)
  compute = [p['compute'] for p in efficient]
  fit = results['L(C)']
  axis.plot(compute, [p['eval_loss'] for p in efficient], 'o', label='compute frontier')
  axis.plot(compute, _fitted(fit, compute), 'k--',
            label=f'(C_c/C)^{fit["alpha"]:.3f} (Kaplan: {KAPLAN["alpha_C"]})')
  _finish(figure, axis, 'training compute C = 6ND (FLOPs)',
          os.path.join(workdir, 'loss_vs_compute.png'))


def _finish(figure, axis, xlabel: str, path: str):
  axis.set_xscale('log')
  axis.set_yscale('log')
  axis.set_xlabel(xlabel)
  axis.set_ylabel('held-out loss (nats / token)')
  axis.legend(fontsize='small')
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def fits(experiment: config_lib.ExperimentConfig, workdir: str) -> dict:
  """The command's printed result: the two fits."""
  results = run(experiment, workdir, _SIZES.value, _BUDGETS.value)
  return {name: results[name] for name in ('L(N)', 'L(C)')}


if __name__ == '__main__':
  outputs.main(fits, 'runs/scaling')
