"""How every experiment command starts, and what it leaves in its workdir: the
exact config it ran with, then its results as JSON (for tools) and Markdown
(for people)."""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from lamda_jax import config as config_lib
from lamda_jax import console
from lamda_jax.training import distributed

# Every experiment's two flags, defined once: absl refuses a flag defined twice.
CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file; any field can be overridden, e.g. '
    '--config.train.steps=100.', lock_config=True)
WORKDIR = flags.DEFINE_string('workdir', None, 'Where the experiment writes; each stage or '
                              'variant in a folder of its own.')


def main(command, default_workdir: str):
  """Runs an experiment command as an absl app: `command(experiment, workdir)`
  on --config (required) and --workdir (`default_workdir` unless given), its
  result printed as one JSON line."""
  def run(argv):
    del argv
    experiment, workdir = start()
    print(json.dumps(command(experiment, workdir)))

  flags.FLAGS.set_default('workdir', default_workdir)
  flags.mark_flag_as_required('config')
  app.run(run)


def start() -> tuple[config_lib.ExperimentConfig, str]:
  """(the validated experiment of --config, --workdir), with a quiet console
  logging to the workdir and jax.distributed started from config.distributed,
  so the command runs on every host of a pod slice as `lamda_jax.main` does."""
  workdir = WORKDIR.value
  console.setup(workdir, verbose=False)
  experiment = config_lib.load(CONFIG.value)
  distributed.initialize(experiment.distributed)
  return experiment, workdir


def write_config(workdir: str, experiment: config_lib.ExperimentConfig):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w', encoding='utf-8') as f:
    f.write(experiment.to_config_dict().to_json_best_effort(indent=1))


def write_results(workdir: str, results: dict, markdown: str):
  with open(os.path.join(workdir, 'results.json'), 'w', encoding='utf-8') as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(workdir, 'results.md'), 'w', encoding='utf-8') as f:
    f.write(markdown)
