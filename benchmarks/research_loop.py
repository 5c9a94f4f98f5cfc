"""What LaMDA-Research's steps cost (§6.2), beside sample-and-rank, in one run.

Research dialogs the toolset makes (`research_data.generate`: arithmetic,
look-ups, translations, chitchat) are replayed through the loop itself
(`research.run`) with the `bench` model and the embedded toolset. Every
LAMDA-RESEARCH line is decoded as `researcher.Researcher` decodes it: a
`continuation.Continuation` runs what the transcript gained since its last
line, then one token per step, here for as many tokens as the dialog's own
line and its newline (where a trained model stops; at most
`research.max_line_tokens`). Every query goes to the real toolset. The loop then takes the dialog's own
line, since a model with random weights writes none the protocol accepts: the
transcripts, queries and results are the fine-tuning data's, and the model
does the loop's work on them. The yardstick, measured in the same run: the
sample-and-rank generation of a reply (16 candidates x 64 new tokens,
`decode_throughput`), which the research loop follows. One JSON line per
precision.

  .venv/bin/python -m benchmarks.research_loop
"""

import collections
import dataclasses
import json
import tempfile
import time

from absl import app, flags
import jax

from benchmarks import decode_throughput, machine
from lamda_jax import config as config_lib
from lamda_jax.config import ExperimentConfig
from lamda_jax.configs import bench
from lamda_jax.data import dialog
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.grounding import research, research_data, researcher, toolset
from lamda_jax.serving import continuation, decoding, runs
from lamda_jax.training import trainer as trainer_lib

CPU = machine.describe_cpu()  # in every line: one CPU's numbers are not another's

FLAGS = flags.FLAGS  # --precisions is decode_throughput's, whose yardstick this reuses
TOKENIZER_VOCAB = 8000  # pieces learnt from the dialogs and snippets (the model reads 32,000)


def _define_flags():
  """Here, not at import: the tests import this module beside others."""
  flags.DEFINE_integer('per_kind', 10, 'Dialogs of each kind replayed.')


class _TimedToolset:
  """The toolset's `query`, timed."""

  def __init__(self, tools: toolset.Toolset):
    self.tools, self.seconds, self.calls = tools, 0.0, 0

  def query(self, query: str, conversation: toolset.Conversation) -> list[str]:
    start = time.perf_counter()
    results = self.tools.query(query, conversation)
    self.seconds += time.perf_counter() - start
    self.calls += 1
    return results


def replay(run: runs.Run, tools: toolset.Toolset, dialogs) -> dict:
  """Each dialog's research through `research.run`, its lines decoded by the
  run's model (as `Researcher` decodes them) and its queries answered by
  `tools` -> totals over the dialogs. `diverged` counts the replays whose
  transcript is not the dialog's: toolset results other than the recorded
  ones, or a line the loop did not take."""
  cfg = run.experiment.research
  sampling = decoding.Sampling(1, cfg.max_line_tokens, run.experiment.decode.top_k,
                               float(cfg.temperature), float(run.experiment.decode.top_p))
  timed, totals = _TimedToolset(tools), collections.Counter()
  for item in dialogs:
    decoder = continuation.Continuation(
        run, sampling, (run.tokenizer.encode('\n')[-1], run.tokenizer.eos_id()),
        run.experiment.train.seq_len)
    lines = [turn.text for turn in item.transcript if turn.speaker == research.RESEARCH]
    context = item.transcript[:[turn.speaker for turn in item.transcript].index(research.BASE)]
    start = time.perf_counter()
    with run.activated():
      found = research.run(context, item.transcript[len(context)].text,
                           _scripted_ask(run, decoder, lines, totals), timed,
                           toolset.Conversation(), max_steps=len(lines),
                           max_result_chars=cfg.max_result_chars)
    totals['loop_seconds'] += time.perf_counter() - start
    totals['diverged'] += found.transcript != item.transcript
    totals['dialogs'] += 1
    totals['lines'] += decoder.lines
    totals['tokens_run'] += decoder.tokens_run
  return {**totals, 'toolset_calls': timed.calls, 'toolset_seconds': timed.seconds}


def _scripted_ask(run: runs.Run, decoder: continuation.Continuation, lines, totals):
  """`research.run`'s `ask`: the model decodes the next line as long as the
  scripted one and its newline, where a trained model stops (timed); the loop
  gets the scripted line."""
  def ask(transcript, forced_prefix):
    line = lines[decoder.lines]
    length = (len(run.tokenizer.encode(line)) + 1 -
              len(run.tokenizer.encode(forced_prefix.rstrip())))
    decoder.sampling = dataclasses.replace(
        decoder.sampling, max_new_tokens=min(length, run.experiment.research.max_line_tokens))
    start = time.perf_counter()
    written = decoder.line(researcher.line_prompt(run.tokenizer, transcript, forced_prefix))
    totals['model_seconds'] += time.perf_counter() - start
    totals['tokens_written'] += len(written)
    return line
  return ask


def bench_run(experiment: ExperimentConfig, tokenizer) -> runs.Run:
  """A run of the experiment's model with freshly initialised parameters."""
  trainer = trainer_lib.set_up(experiment)
  with trainer.activated():
    params = decoding.inference_params(trainer.initial_state().params, experiment.model)
  return runs.Run(experiment, '', params, tokenizer, trainer.model, trainer.mesh)


def summary(totals: dict) -> dict:
  """Per line, per toolset call and per reply, in milliseconds."""
  lines, calls, dialogs = totals['lines'], max(totals['toolset_calls'], 1), totals['dialogs']
  return {'dialogs': dialogs, 'lines': lines, 'toolset_calls': totals['toolset_calls'],
          'diverged': totals['diverged'],
          'model_ms_per_line': 1e3 * totals['model_seconds'] / lines,
          'toolset_ms_per_call': 1e3 * totals['toolset_seconds'] / calls,
          'research_ms_per_reply': 1e3 * totals['loop_seconds'] / dialogs,
          'tokens_run_per_line': totals['tokens_run'] / lines,
          'tokens_written_per_line': totals['tokens_written'] / lines}


def main(argv):
  del argv
  experiment = config_lib.load(bench.get_config())
  with tempfile.TemporaryDirectory() as directory:
    tools = toolset.Toolset.from_config(experiment.toolset, directory)
    dialogs = list(research_data.generate(tools, FLAGS.per_kind))
    snippets = (tools.index.snippet(row).text for row in range(min(len(tools.index), 20_000)))
    texts = [dialog.render(item.transcript) for item in dialogs] + list(snippets)
    tokenizer = tokenizer_lib.train(texts, TOKENIZER_VOCAB, f'{directory}/tokenizer.model')
    for precision in FLAGS.precisions:
      run_experiment = dataclasses.replace(
          experiment, model=dataclasses.replace(experiment.model, dtype=precision))
      run = bench_run(run_experiment, tokenizer)
      replay(run, tools, dialogs)  # compiles each chunk size and line length the dialogs need
      totals = replay(run, tools, dialogs)
      generate = decode_throughput.measure(run_experiment, repeats=2, warmup=3)
      research_ms = summary(totals)
      print(json.dumps({
          'benchmark': 'research_loop', 'cpu': CPU, 'device': jax.devices()[0].device_kind,
          'config': experiment.name, 'precision': precision, 'tokenizer_vocab': TOKENIZER_VOCAB,
          **research_ms,
          'sample_and_rank_generate_ms': 1e3 * generate['generate_seconds'],
          'research_vs_generate': research_ms['research_ms_per_reply'] / (
              1e3 * generate['generate_seconds'])}), flush=True)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
