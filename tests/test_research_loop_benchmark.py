"""The research-loop benchmark replays the dialogs it says it replays: their
own lines, the real toolset's results, each line decoded at its own length."""

import dataclasses
import random

from benchmarks import research_loop
from lamda_jax.data.dialog import Turn
from lamda_jax.grounding import research, research_data
from lamda_jax.serving import runs
from tests.toolset_helpers import SNIPPETS, make_toolset


def _dialogs(tools):
  rng = random.Random(0)
  arithmetic = [research_data.arithmetic(rng, tools) for _ in range(2)]
  paris = next(tools.index.snippet(row) for row in range(len(tools.index))
               if tools.index.snippet(row).title == 'Paris')
  lookup = research_data.lookup(rng, tools, paris)
  chitchat = research_data.chitchat([Turn('A', 'hello there')], Turn('B', 'hi, how are you?'))
  return arithmetic + [lookup, chitchat]


def test_replay_runs_each_dialogs_own_lines_through_the_loop_and_the_toolset(a_run, tmp_path):
  experiment, workdir = a_run
  run = runs.open_run(experiment, workdir, 'decode.from_run')
  tools = make_toolset(tmp_path, SNIPPETS)
  dialogs = _dialogs(tools)
  lines = [turn.text for item in dialogs for turn in item.transcript
           if turn.speaker == research.RESEARCH]
  totals = research_loop.replay(run, tools, dialogs)
  assert totals['diverged'] == 0
  assert totals['dialogs'] == len(dialogs) and totals['lines'] == len(lines)
  assert totals['toolset_calls'] == sum(line.startswith('TS, ') for line in lines) == 3
  # Each line is decoded for as many tokens as it and its newline take.
  cap = experiment.research.max_line_tokens
  assert totals['tokens_written'] == sum(
      min(cap, len(run.tokenizer.encode(line)) + 1) for line in lines)
  assert totals['tokens_run'] > totals['tokens_written']  # the transcripts ran too
  summary = research_loop.summary(totals)
  assert summary['model_ms_per_line'] > 0 and summary['toolset_ms_per_call'] > 0


def test_a_replay_whose_toolset_answers_otherwise_is_counted_as_diverged(a_run, tmp_path):
  experiment, workdir = a_run
  run = runs.open_run(experiment, workdir, 'decode.from_run')
  tools = make_toolset(tmp_path, SNIPPETS)
  item = research_data.arithmetic(random.Random(1), tools)
  changed = tuple(dataclasses.replace(turn, text='12345') if turn.speaker == research.TOOLSET
                  else turn for turn in item.transcript)
  totals = research_loop.replay(run, tools, [item, dataclasses.replace(item, transcript=changed)])
  assert totals['diverged'] == 1
