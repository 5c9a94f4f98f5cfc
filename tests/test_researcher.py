"""The model-driven research loop: cached line decoding against full passes,
prompts against the research task's training rows, and a run through the loop."""

import dataclasses
import io
import json
import os
import random
import subprocess
import sys

import jax
import numpy as np
import pytest
from werkzeug.test import Client

from lamda_jax import config as config_lib
from lamda_jax.data import corpora, dialog, pipeline
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import formats
from lamda_jax.grounding import calculator, research, research_data, researcher
from lamda_jax.serving import chat, continuation, decoding, generate, ranking, runs, server
from lamda_jax.training import partitioning
from tests import test_decoding
from tests.configs import arithmetic_research
from tests.toolset_helpers import make_toolset

STOP = 7  # a token that ends a line in the cached-decoding tests
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(model, params):
  """A Run of test_decoding's small model on one device."""
  experiment = config_lib.load(dict(name='t', model=dataclasses.asdict(model.config),
                                    mesh=dict(data=1, fsdp=1, tensor=1)))
  mesh = partitioning.create_mesh(experiment, jax.devices()[:1])
  return runs.Run(experiment, '', params, None, model, mesh)


def _greedy_line(model, params, prompt, max_tokens):
  """The reference: a full forward pass over the whole sequence per token."""
  inputs, written = [0] + list(prompt), []
  for _ in range(max_tokens):
    token = int(np.argmax(test_decoding._full_logits(model, params, inputs)))  # pylint: disable=protected-access
    written.append(token)
    inputs.append(token)
    if token == STOP:
      break
  return written


def test_cached_lines_equal_full_passes_as_the_prompt_grows_and_changes():
  model, params = test_decoding._model_and_params()  # pylint: disable=protected-access
  sampling = decoding.Sampling(1, 6, 0, 0.0, 1.0)
  lines = continuation.Continuation(_run(model, params), sampling, [STOP], window=40)
  prompt, cut, slots = [5, 9, 17, 4], 0, []
  with _run(model, params).activated():
    for step in range(4):
      written = lines.line(prompt)
      slots.append(lines.cache.positions.shape[1])
      assert written == _greedy_line(model, params, prompt, 6), step
      cut += STOP not in written
      assert lines.line_cuts == cut  # six tokens without the stop token: cut there
      # The next prompt: the line as written, or re-rendered with its last
      # token changed (the cache rewinds to where they part), then new tokens.
      line = written if step % 2 else written[:-1] + [(written[-1] + 1) % 61]
      prompt = prompt + line + [11, 3 + step]
    # Only what was new ran: each prompt's new tokens and each line's tokens.
    assert lines.tokens_run < 1 + len(prompt) + 4 * 6 + 4
  # The cache grows by powers of two to hold what it keeps plus the padded
  # 16-token chunk of the prompt's new tokens: 0 + 16, then 10 + 16, 19 + 16
  # and 26 + 16 (a rewound line keeps one token less), never the 40 + 64
  # slots a window of 40 could need.
  assert slots == [16, 32, 64, 64]


def test_the_cache_grows_to_hold_a_prompt_and_its_line_up_to_what_the_window_needs():
  model, params = test_decoding._model_and_params()  # pylint: disable=protected-access
  sampling = decoding.Sampling(1, 6, 0, 0.0, 1.0)
  lines = continuation.Continuation(_run(model, params), sampling, [STOP], window=40)
  prompt = list(np.random.default_rng(1).integers(3, 61, 12))
  longer = list(np.random.default_rng(2).integers(3, 61, 36))
  with _run(model, params).activated():
    # 13 prompt tokens and 6 of the line: more than the 16-token chunk.
    assert lines.line(prompt) == _greedy_line(model, params, prompt, 6)
    assert lines.cache.positions.shape[1] == 32
    # Cut to its newest 33 tokens, it keeps only the leading 0: 1 + a 64-token
    # chunk, which the 40 + 64 slots of the window hold.
    assert lines.line(longer) == _greedy_line(model, params, longer[-33:], 6)
    assert lines.cache.positions.shape[1] == 40 + 64


def test_a_prompt_longer_than_the_window_keeps_its_newest_tokens():
  model, params = test_decoding._model_and_params()  # pylint: disable=protected-access
  sampling = decoding.Sampling(1, 5, 0, 0.0, 1.0)
  lines = continuation.Continuation(_run(model, params), sampling, [STOP], window=24)
  prompt = list(np.random.default_rng(0).integers(3, 61, 30))
  with _run(model, params).activated():
    written = lines.line(prompt)
  assert lines.window_cuts == 1
  assert written == _greedy_line(model, params, prompt[-(24 - 1 - 5):], 5)
  assert lines.line_cuts == (STOP not in written)


@pytest.fixture(scope='module')
def tokenizer(a_run):
  experiment, run_dir = a_run
  return pipeline.run_tokenizer(experiment, run_dir, 'decode.from_run')


TRANSCRIPT = (Turn('A', 'what is 135 plus 7721?'), Turn(research.BASE, 'About 8000.'),
              Turn(research.RESEARCH, 'TS, 135+7721'), Turn(research.TOOLSET, '7856'),
              Turn(research.RESEARCH, 'User, 7856.'))


@pytest.mark.parametrize('forced', ['', 'User, '])
def test_the_loop_prompts_with_exactly_the_research_tasks_tokens(tokenizer, forced):
  """Before each research line, the prompt is the training row's tokens up to
  that line's text, which the row then continues with the line's tokens."""
  example, = formats.research_examples(tokenizer, TRANSCRIPT, seq_len=256)
  for index, turn in enumerate(TRANSCRIPT):
    if turn.speaker != research.RESEARCH or (forced and not turn.text.startswith('User')):
      continue
    prompt = researcher.line_prompt(tokenizer, TRANSCRIPT[:index], forced)
    assert list(example.tokens[:len(prompt)]) == prompt
    # Every token the model is to write carries loss in the row, up to the newline or EOS.
    written = example.loss_weights[len(prompt):]
    assert written[0] == 1.0
    rest = tokenizer.encode(turn.text)[len(tokenizer.encode(forced.rstrip())) if forced else 0:]
    assert list(example.tokens[len(prompt):len(prompt) + len(rest)]) == rest


@pytest.fixture(scope='module')
def answerer(a_run, tmp_path_factory):
  experiment, run_dir = a_run
  experiment = dataclasses.replace(
      experiment, decode=dataclasses.replace(experiment.decode, from_run=run_dir,
                                             num_candidates=2, max_new_tokens=8),
      research=dataclasses.replace(experiment.research, max_steps=2, max_line_tokens=12))
  return researcher.Researcher(experiment, tools=make_toolset(tmp_path_factory.mktemp('tools')))


def test_an_untrained_run_goes_through_the_loop_without_a_crash(answerer):
  context = (Turn('A', 'what is 135 plus 7721?'),)
  grounded, = answerer.respond([context])
  transcript = grounded.research.transcript
  assert transcript[:2] == context + (Turn(research.BASE, grounded.draft.reply),)
  assert transcript[-1].speaker == research.RESEARCH
  assert research.parse_line(transcript[-1].text)[0] == 'User'
  assert grounded.research.calls <= 2 and grounded.tokens_run > 0
  # Whatever the untrained model wrote, the outcome is one of the documented rules.
  if grounded.reply == grounded.draft.reply:
    assert grounded.research.events.get('draft_used') or transcript[-1].text.endswith(
        grounded.draft.reply)
  payload = json.loads(json.dumps(grounded.to_json()))
  assert payload['reply'] == grounded.reply and payload['draft'] == grounded.draft.reply
  assert dialog.render(transcript) == grounded.transcript_text()


@pytest.mark.parametrize('reply, turn', [
    ('well\n  it is\tfive\n', 'well it is five'),  # one line
    ('about 7 TS, 5+2 x', 'about 7'), ('sure. User, 5', 'sure.'), ('hm TS: 5', 'hm'),
    ('LAMDA-RESEARCH: TS, a', ''), ('TSA and Users agree, STS', 'TSA and Users agree, STS')])
def test_a_draft_is_one_line_that_speaks_for_no_one_else(reply, turn):
  assert researcher.draft_turn_text(reply) == turn


def test_the_loop_reads_the_draft_as_its_turn(answerer):
  grounded = answerer.research((Turn('A', 'hi'),), ranking.Decision('well\n TS, 5', False, ()))
  assert grounded.research.transcript[1] == Turn(research.BASE, 'well')


def test_chat_shows_the_transcript_and_http_returns_it(answerer):
  out = io.StringIO()
  chat.run(answerer, ['/transcript\n', 'what is 2 plus 2?\n', '/transcript\n'], out)
  shown = out.getvalue().split('\n')
  assert '(nothing said yet)' in shown
  assert 'A: what is 2 plus 2?' in shown and any(line.startswith('LAMDA-BASE: ') for line in shown)
  assert any(line.startswith('LAMDA-RESEARCH: User, ') for line in shown)
  client = Client(server.make_app(answerer.respond, config_lib.ServeConfig()))
  body = client.post('/v1/respond', json={'context': [{'speaker': 'A', 'text': 'hi'}]}).get_json()
  assert body['transcript'][0] == {'speaker': 'A', 'text': 'hi'}
  assert body['transcript'][-1]['text'] == f'User, {body["reply"]}' or body['events']
  assert {'calls', 'citation', 'draft', 'candidates'} <= set(body)


def test_generate_researches_each_context_once_and_never_the_padding(answerer, tmp_path):
  contexts = tmp_path / 'contexts.jsonl'
  contexts.write_text(''.join(json.dumps({'id': i, 'context': [{'speaker': 'A', 'text': text}]})
                              + '\n' for i, text in enumerate(['what is 2+2?', 'hi'])))
  before = answerer.replies
  result = generate.run(answerer, str(contexts), str(tmp_path / 'out'))
  written = [json.loads(line) for line in open(result['output'], encoding='utf-8')]
  assert [record['id'] for record in written] == [0, 1]
  assert all(record['transcript'][0]['speaker'] == 'A' for record in written)
  assert answerer.replies - before == 2  # a batch of 8, six of them padding


def test_without_the_loop_the_chat_says_how_to_start_it():
  assert 'research.enabled' in chat.format_transcript(
      ranking.Decision('hi', False, ()))


@pytest.mark.slow
def test_a_model_fine_tuned_on_arithmetic_dialogs_asks_the_calculator(tmp_path):
  """End to end: research dialogs made by the real toolset, `--mode finetune`
  on them (one device, in a process of its own), then the loop with the
  trained model on questions whose expressions no training dialog used. Each
  keeps its generated draft (a chitchat turn, a wrong guess, garbled numbers
  or the expression echoed, as in training): this model learnt only
  research, so its own drafts are noise."""
  tools = make_toolset(tmp_path)
  rng = random.Random(0)
  drafts = [turn['text'] for _, turns in corpora.chitchat_dialogs() for turn in turns
            if len(turn['text']) <= research_data.MAX_DRAFT_CHARS]
  dialogs = [research_data.arithmetic(rng, tools, drafts) for _ in range(3000)]
  paths = research_data.export(dialogs, str(tmp_path / 'corpora'), eval_fraction=0.05)
  config_path = f'tests/configs/arithmetic_research.py:{paths["train"]}'
  workdir = tmp_path / 'run'
  trained = subprocess.run(
      [sys.executable, '-m', 'lamda_jax.main', '--config', config_path, '--mode', 'finetune',
       '--workdir', str(workdir)], cwd=ROOT, capture_output=True, text=True, timeout=900,
      check=False, env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''})
  assert trained.returncode == 0, trained.stderr[-3000:]

  experiment = config_lib.load(arithmetic_research.get_config(paths['train']))
  experiment = dataclasses.replace(
      experiment, decode=dataclasses.replace(experiment.decode, from_run=str(workdir)),
      research=dataclasses.replace(experiment.research, max_line_tokens=16))
  answerer = researcher.Researcher(experiment, tools=tools)
  held_out = [json.loads(line) for line in open(paths['validation'], encoding='utf-8')][:20]
  used = reported = exact = 0
  for record in held_out:
    draft = ranking.Decision(record['transcript'][1]['text'], False, ())
    grounded = answerer.research((Turn(**record['transcript'][0]),), draft)
    kind, query = research.parse_line(grounded.research.transcript[2].text) or ('', '')
    calculated = calculator.calculate(query) if kind == 'TS' else []
    if calculated:  # it asked the calculator
      used += 1
      reported += grounded.reply == f'{calculated[0]}.'  # and answered with its number
    exact += (kind, query) == ('TS', record['fact'])
  # Measured at these settings: 19, 15 and 14 of 20. A model that never asks: 0.
  assert used >= 16 and reported >= 9 and exact >= 9, (used, reported, exact)
