"""The paper's rating-token discriminators against classifier heads, on the same data.

  python -m experiments.discriminator_readouts --config configs/tiny.py --workdir runs/readouts

1. pre-train once (`pretrain/`);
2. from it, fine-tune the discriminators twice on the same rated responses
   (`finetune.labels`, generator off), once per `finetune.discriminator`
   (`rating_token/`, `heads/`);
3. evaluate both on the same held-out split (`--mode eval`'s metrics: AUC,
   accuracy and expected calibration error per attribute) and time scoring
   the same held-out responses (all four attributes, cached suffixes, once
   every shape is compiled).

`results.json` and `results.md` put them side by side; the exact config is in
`config.json`.
"""

import os
import time

from absl import flags
import numpy as np

from experiments import outputs
from lamda_jax import attributes
from lamda_jax import config as config_lib
from lamda_jax.finetune import tasks
from lamda_jax.serving import evaluation, runs, scoring
from lamda_jax.training import loop

_SCORED = flags.DEFINE_integer('scored', 256, 'Held-out responses timed through scoring.')


def scoring_seconds(opened: runs.Run, records, seq_len: int, batch: int = 64) -> float:
  """Seconds per response to score all four attributes: the second of two
  passes, so that every prompt width met is compiled before the clock runs."""
  chunks = [records[i:i + batch] for i in range(0, len(records), batch)]
  def score(chunk):
    return scoring.score(opened.params, opened.model, opened.tokenizer,
                         [r.context for r in chunk], [r.response.text for r in chunk],
                         attributes.NAMES, seq_len)
  with opened.activated():
    for _ in range(2):
      start = time.perf_counter()
      for chunk in chunks:
        np.asarray(score(chunk))
    return (time.perf_counter() - start) / len(records)


def run(experiment: config_lib.ExperimentConfig, workdir: str, scored: int = 256) -> dict:
  outputs.write_config(workdir, experiment)
  pretrain = os.path.join(workdir, 'pretrain')
  loop.run(experiment.with_fields(finetune={'discriminator': 'rating_token'}), pretrain)
  results = {}
  for readout in config_lib.DISCRIMINATORS:
    stage = os.path.join(workdir, readout)
    tuned = tasks.finetune_experiment(experiment.with_fields(finetune={
        'generator_weight': 0.0, 'init_from': pretrain, 'discriminator': readout}))
    loop.run(tuned, stage, tasks.build(tuned, stage), init_from=pretrain)
    judged = tuned.with_fields(eval={'from_run': stage, 'sampled_contexts': 0})
    metrics = evaluation.run(judged, os.path.join(stage, 'eval'))
    opened = runs.open_run(judged, stage, 'the readout under test')
    records = [r for r in evaluation.held_out_records(judged, os.path.join(stage, 'eval'))
               if scoring.fits(opened.tokenizer, r.context, r.response.text,
                               experiment.train.seq_len)][:scored]
    metrics['scoring_ms_per_response'] = 1000 * scoring_seconds(
        opened, records, experiment.train.seq_len)
    results[readout] = metrics
  outputs.write_results(workdir, results, markdown(results))
  return results


def markdown(results: dict) -> str:
  """Per attribute and readout: held-out AUC, accuracy and calibration error."""
  lines = ['| attribute | readout | held-out responses | positive rate | AUC | accuracy | ECE |',
           '|---|---|---|---|---|---|---|']
  for attribute in attributes.NAMES:
    for readout, metrics in results.items():
      if f'{attribute}/auc' in metrics:
        lines.append(f'| {attribute} | {readout} | {metrics[f"{attribute}/count"]} | ' + ' | '.join(
            f'{metrics[f"{attribute}/{name}"]:.3f}'
            for name in ('positive_rate', 'auc', 'accuracy', 'ece')) + ' |')
  lines += ['', '| readout | scoring, ms per response (4 attributes) |', '|---|---|']
  lines += [f'| {readout} | {m["scoring_ms_per_response"]:.2f} |' for readout, m in results.items()]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  outputs.main(lambda experiment, workdir: run(experiment, workdir, _SCORED.value),
               'runs/readouts')
