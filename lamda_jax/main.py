"""The one entry point: `python -m lamda_jax.main --config configs/<name>.py --mode MODE`.

Modes:
  describe  sizes, FLOPs and parameter shapes as one JSON line; allocates nothing.
  plan      the run on a TPU target (config.plan): bytes per device under the
            sharding rules, step time and days; with plan.compile, the real
            train step compiled ahead of time and XLA's memory analysis.
  forward   one forward pass of a freshly initialised model on real text
            (Python's bundled documentation), reporting the per-token loss.
  tokenizer trains (or loads) the run's SentencePiece model from the data mixture
            and checks it on held-out text.
  train     the sharded train loop; resumes from the workdir's latest checkpoint.
  finetune  the same loop on the generator and discriminator tasks, from rated
            responses (config.finetune), starting from a pre-trained run.
  filter    scores candidate responses with a fine-tuned run's discriminators and
            keeps those above the thresholds (config.filter).
  eval      the discriminators' accuracy, AUC and calibration on labelled held-out
            responses (config.eval).
  rate_report  the paper's metrics (sensibleness, specificity, interestingness,
            SSI, safety, with intervals) from rating sheets people filled in
            (config.eval.ratings).
  eval_grounded  LaMDA-Base alone vs LaMDA-Base + Research on held-out questions
            with known answers: accuracy, groundedness, informativeness, citation
            accuracy, toolset calls (config.research).
  chat      a terminal chat with a run's model by sample-and-rank (config.decode),
            through the research loop when research.enabled.
  generate  the same for every context of a JSONL file (decode.contexts).
  serve     POST /v1/respond on 127.0.0.1 (config.serve), the same.
  index     builds the toolset's retrieval index once (config.toolset).
  toolset   each input line is a query to the toolset (calculator, translator,
            retrieval); prints every tool's output.
"""

import json
import os
import sys

from absl import app, flags
import jax
from ml_collections import config_flags

from lamda_jax import config as config_lib
from lamda_jax import console
from lamda_jax.data import pipeline
from lamda_jax.finetune import tasks
from lamda_jax.grounding import groundedness, research_data, researcher, retrieval, toolset
from lamda_jax.model import stats
from lamda_jax.serving import (
  chat,
  evaluation,
  filtering,
  generate,
  rating,
  responder,
  server,
)
from lamda_jax.training import distributed, forward_check, loop, planning

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/default',
                               'Directory for this run\'s artefacts (tokenizer, checkpoints).')
_VERBOSE = flags.DEFINE_bool('verbose', False,
                             'Show the libraries\' own output (TFDS, Orbax, absl INFO) on the '
                             'console instead of only in <workdir>/log.txt.')


def describe(experiment: config_lib.ExperimentConfig, workdir: str):
  del workdir  # describe writes nothing
  print(json.dumps(stats.describe(experiment)))


def plan_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  planning.run(experiment, workdir)


def forward(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(forward_check.run(experiment, workdir)))


def train_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  summary = loop.run(experiment, workdir)
  if jax.process_index() == 0:
    print(json.dumps({'mode': 'train', **summary}))


def tokenizer_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(pipeline.tokenizer_report(experiment, workdir)))


def finetune_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  experiment = research_data.resolve_embedded(tasks.finetune_experiment(experiment), workdir)
  summary = loop.run(experiment, workdir, tasks.build(experiment, workdir),
                      init_from=experiment.finetune.init_from,
                      keep_optimizer_state=experiment.finetune.keep_optimizer_state)
  if jax.process_index() == 0:
    print(json.dumps({'mode': 'finetune', **summary}))


def filter_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(filtering.run(experiment, workdir)))


def eval_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(evaluation.run(experiment, workdir)))


def rate_report_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(rating.run(experiment, workdir)))


def answerer(experiment: config_lib.ExperimentConfig):
  """Sample-and-rank alone, or through the research loop when research.enabled."""
  if experiment.research.enabled:
    return researcher.Researcher(experiment)
  return responder.Responder(experiment)


def chat_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  del workdir  # the conversation is not saved
  chat.run(answerer(experiment))


def generate_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(generate.run(answerer(experiment), experiment.decode.contexts, workdir)))


def serve_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  answers = answerer(experiment)
  tools = getattr(answers, 'tools', None) or toolset.Toolset.from_config(experiment.toolset,
                                                                        workdir)
  server.serve(answers.respond, experiment.serve, toolset.Conversations(tools),
               (experiment.decode.user_speaker, experiment.decode.model_speaker))


def eval_grounded_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(groundedness.run(experiment, workdir)))


def index_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  cfg = experiment.toolset
  folder = retrieval.build_index(toolset.open_collections(cfg),
                                 cfg.index_dir or os.path.join(workdir, 'toolset_index'))
  print(json.dumps({'mode': 'index', 'index': folder, 'snippets': len(retrieval.Index(folder))}))


def toolset_mode(experiment: config_lib.ExperimentConfig, workdir: str):
  print(json.dumps(toolset.repl(toolset.Toolset.from_config(experiment.toolset, workdir))))


MODES = {'describe': describe, 'plan': plan_mode, 'forward': forward,
         'tokenizer': tokenizer_mode, 'train': train_mode, 'finetune': finetune_mode,
         'filter': filter_mode, 'eval': eval_mode, 'rate_report': rate_report_mode,
         'eval_grounded': eval_grounded_mode, 'chat': chat_mode, 'generate': generate_mode,
         'serve': serve_mode, 'index': index_mode, 'toolset': toolset_mode}
_MODE = flags.DEFINE_enum('mode', 'describe', list(MODES), 'What to run.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    config_lib.check_local_path('--workdir', _WORKDIR.value)
  except config_lib.ConfigError as error:
    print(f'Invalid flag: {error}', file=sys.stderr)
    sys.exit(2)
  console.setup(_WORKDIR.value, _VERBOSE.value)
  try:
    experiment = config_lib.load(_CONFIG.value)
  except config_lib.ConfigError as error:
    print(f'Invalid config {flags.FLAGS["config"].config_filename}: {error}', file=sys.stderr)
    sys.exit(2)
  distributed.initialize(experiment.distributed)
  try:
    MODES[_MODE.value](experiment, _WORKDIR.value)
  except (config_lib.ConfigError, FileNotFoundError) as error:  # found before any compiling
    print(f'Invalid config {flags.FLAGS["config"].config_filename}: {error}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
