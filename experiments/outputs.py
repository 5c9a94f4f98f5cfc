"""How every experiment command starts, and what it leaves in its workdir: the
exact config it ran with, then its results as JSON (for tools) and Markdown
(for people)."""

import json
import os

from lamda_jax import config as config_lib
from lamda_jax import console
from lamda_jax.training import distributed


def start(config, workdir: str) -> config_lib.ExperimentConfig:
  """The validated experiment of a command's --config: a quiet console logging
  to the workdir, and jax.distributed started from config.distributed, so the
  command runs on every host of a pod slice as `lamda_jax.main` does."""
  console.setup(workdir, verbose=False)
  experiment = config_lib.load(config)
  distributed.initialize(experiment.distributed)
  return experiment


def write_config(workdir: str, experiment: config_lib.ExperimentConfig):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w', encoding='utf-8') as f:
    f.write(experiment.to_config_dict().to_json_best_effort(indent=1))


def write_results(workdir: str, results: dict, markdown: str):
  with open(os.path.join(workdir, 'results.json'), 'w', encoding='utf-8') as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(workdir, 'results.md'), 'w', encoding='utf-8') as f:
    f.write(markdown)
