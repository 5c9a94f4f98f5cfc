"""The research protocol with a scripted stand-in model (§6.2, Figure 3)."""

import json
import os
import random
import re

import pytest

from lamda_jax import config as config_lib
from lamda_jax.data import builders, dialog
from lamda_jax.data.dialog import Turn
from lamda_jax.grounding import groundedness, research, research_data, retrieval, toolset
from tests.configs import tiny_docs
from tests.toolset_helpers import SNIPPETS, make_toolset

CONTEXT = (Turn('A', 'How old is Rafael Nadal?'),)


@pytest.fixture(scope='module')
def tools(tmp_path_factory):
  return make_toolset(tmp_path_factory.mktemp('research'))


class Script:
  """A stand-in model: says its lines in order, and records what it was shown."""

  def __init__(self, *lines):
    self.lines, self.shown = list(lines), []

  def __call__(self, transcript, forced):
    self.shown.append((dialog.render(transcript), forced))
    return self.lines.pop(0)


def test_a_lookup_then_an_answer_renders_as_the_papers_transcript(tools):
  model = Script("TS, Rafael Nadal's age", 'User, He is 38: born on 3 June 1986.')
  result = research.run(CONTEXT, 'He is 35.', model, tools, toolset.Conversation())
  assert dialog.render(result.transcript) == '\n'.join([
      'A: How old is Rafael Nadal?',
      'LAMDA-BASE: He is 35.',
      "LAMDA-RESEARCH: TS, Rafael Nadal's age",
      'TS: Rafael Nadal is a Spanish tennis player born on 3 June 1986. He won 22 Grand Slam '
      'titles. He retired in 2024. https://example.org/nadal',
      'LAMDA-RESEARCH: User, He is 38: born on 3 June 1986.'])
  assert result.reply == 'He is 38: born on 3 June 1986.' and result.calls == 1
  assert result.citation == 'https://example.org/nadal' and result.events == {}
  # The model saw the toolset's result before it answered.
  assert model.shown[1][0].endswith('https://example.org/nadal')


def test_the_calculator_answers_through_the_loop(tools):
  result = research.run((Turn('A', 'what is 135 plus 7721?'),), 'About 8000.',
                        Script('TS, 135+7721', 'User, 7856.'), tools, toolset.Conversation())
  assert [t.text for t in result.transcript[-3:]] == ['TS, 135+7721', '7856', 'User, 7856.']
  assert result.reply == '7856.' and result.citation == ''  # a calculation has no URL


def test_asking_again_gets_the_next_snippet_across_steps(tools):
  result = research.run(CONTEXT, 'He is 35.', Script('TS, Nadal tennis', 'TS, Nadal tennis',
                                                     'User, Fourteen French Opens.'),
                        tools, toolset.Conversation())
  results = [t.text.split()[-1] for t in result.transcript if t.speaker == 'TS']
  assert results == ['https://example.org/nadal-clay', 'https://example.org/nadal']
  assert result.citation == 'https://example.org/nadal-clay'  # 'french', 'opens' match it


def test_the_step_cap_forces_an_answer(tools):
  model = Script(*['TS, Nadal tennis'] * 2, 'User, Enough looking.')
  result = research.run(CONTEXT, 'draft', model, tools, toolset.Conversation(), max_steps=2)
  assert result.calls == 2 and result.events == {'step_cap': 1}
  assert [forced for _, forced in model.shown] == ['', '', 'User, ']
  assert result.reply == 'Enough looking.'


def test_an_empty_query_forces_an_answer_and_the_draft_answers_if_the_model_will_not(tools):
  result = research.run(CONTEXT, 'He is 35.', Script('TS,', 'TS, again'), tools,
                        toolset.Conversation())
  assert result.calls == 0 and result.reply == 'He is 35.'
  assert result.events == {'empty_query': 1, 'draft_used': 1}


@pytest.mark.parametrize('line', ['I think he is 38', 'ts, lowercase', 'User 38', '', 'TS'])
def test_a_malformed_line_is_counted_and_the_draft_answers(tools, line):
  result = research.run(CONTEXT, 'He is 35.', Script(line), tools, toolset.Conversation())
  assert result.reply == 'He is 35.' and result.events == {'malformed': 1, 'draft_used': 1}
  assert result.transcript[-1] == Turn('LAMDA-RESEARCH', 'User, He is 35.')


def test_empty_and_overlong_results_are_counted(tools):
  result = research.run(CONTEXT, 'd', Script('TS, zzzz qqqq', 'TS, Nadal tennis', 'User, ok'),
                        tools, toolset.Conversation(), max_result_chars=20)
  toolset_turns = [t.text for t in result.transcript if t.speaker == 'TS']
  assert toolset_turns == ['', 'Nadal won the French']
  assert result.events == {'empty_result': 1, 'result_cut': 1}


def test_the_transcript_round_trips_through_the_dialog_format(tools):
  result = research.run(CONTEXT, 'He is 35.', Script("TS, Rafael Nadal's age", 'User, 38.'),
                        tools, toolset.Conversation())
  lines = dialog.render(result.transcript).split('\n')
  parsed = tuple(Turn(*line.split(': ', 1)) for line in lines)
  assert parsed == result.transcript
  assert [research.parse_line(t.text) for t in parsed if t.speaker == 'LAMDA-RESEARCH'] == [
      ('TS', "Rafael Nadal's age"), ('User', '38.')]


# --- generated research dialogs ---

def _research_lines(item):
  return [research.parse_line(t.text) for t in item.transcript if t.speaker == 'LAMDA-RESEARCH']


def test_arithmetic_dialogs_answer_what_python_computes(tools):
  rng = random.Random(0)
  for _ in range(40):
    item = research_data.arithmetic(rng, tools)
    a, symbol, b = re.fullmatch(r'(\d+)([-+*/])(\d+)', item.fact).groups()
    want = {'+': int(a) + int(b), '-': int(a) - int(b), '*': int(a) * int(b),
            '/': int(a) // int(b)}[symbol]
    assert item.answer == str(want)
    assert symbol != '/' or int(a) % int(b) == 0  # whole answers
    assert _research_lines(item) == [('TS', item.fact), ('User', f'{want}.')]
    assert item.transcript[3] == Turn('TS', str(want))  # the calculator's result, first


def test_lookup_dialogs_ask_until_the_entry_comes_and_cite_it(tmp_path):
  # Two senses of one word share a URL, as WordNet's do: the reply states the
  # one that came, never one the loop did not see.
  senses = SNIPPETS + [{'id': 'paris-2', 'url': 'https://example.org/paris', 'title': 'Paris',
                        'text': 'Paris: a prince of Troy; son of Priam. Stories tell.'}]
  tools = make_toolset(tmp_path, senses)
  for snippet in map(lambda s: retrieval.Snippet(**s), senses):
    item = research_data.lookup(random.Random(0), tools, snippet)
    results = [t.text for t in item.transcript if t.speaker == 'TS']
    assert results[-1].endswith(snippet.url) and item.answer in results[-1]
    assert ';' not in item.answer and '. ' not in item.answer  # the first clause
    assert not any(r.endswith(snippet.url) for r in results[:-1])  # earlier asks missed it
    lines = _research_lines(item)
    assert lines[:-1] == [('TS', snippet.title)] * (len(lines) - 1) and lines[-1][0] == 'User'
    assert research.citation(lines[-1][1], item.transcript) == snippet.url


def test_chitchat_dialogs_answer_at_once():
  context = [Turn('A', 'hi there'), Turn('B', 'hello!'), Turn('A', 'how are you?')]
  item = research_data.chitchat(context, Turn('B', 'great, thanks'))
  assert _research_lines(item) == [('User', 'great, thanks')]
  assert not any(t.speaker == 'TS' for t in item.transcript)


def test_exported_splits_never_share_a_fact(tools, tmp_path):
  rng = random.Random(1)
  items = [research_data.arithmetic(rng, tools) for _ in range(200)]
  items += items[:50]  # the same facts again, phrased anew or not: they must land together
  paths = research_data.export(items, str(tmp_path), eval_fraction=0.3)
  facts = {split: {json.loads(line)['fact'] for line in open(path)}
           for split, path in paths.items()}
  assert facts['train'] and facts['validation'] and not facts['train'] & facts['validation']
  assert all(builders.held_out(f, 0.3) for f in facts['validation'])


@pytest.mark.skipif(not os.path.exists('/usr/share/dictd/freedict-eng-fra.index'),
                    reason='Debian dict-freedict-eng-fra is not installed (make data)')
def test_translation_dialogs_use_the_dictionary(tools):
  item = research_data.translation(random.Random(0), tools, 'house', 'french')
  assert item.answer == 'maison' and _research_lines(item)[-1] == (
      'User', 'house in French is maison.')
  assert research_data.translation(random.Random(0), tools, 'xyzzy', 'french') is None


def test_embedded_research_is_made_once_and_replaces_its_name(tmp_path):
  collection = tmp_path / 'c.jsonl'
  collection.write_text(''.join(json.dumps(s) + '\n' for s in SNIPPETS))
  config = tiny_docs.get_config()
  config.finetune.update(research=('embedded:research',), research_per_kind=4, research_weight=1.0)
  config.toolset.collections = (str(collection),)
  experiment = config_lib.load(config)
  resolved = research_data.resolve_embedded(experiment, str(tmp_path))
  paths = resolved.finetune.research
  assert len(paths) == 2 and all(os.path.exists(p) for p in paths)
  kinds = {json.loads(line)['kind'] for p in paths for line in open(p)}
  assert {'arithmetic', 'lookup', 'chitchat'} <= kinds
  made = [os.stat(p).st_mtime_ns for p in paths]
  assert research_data.resolve_embedded(experiment, str(tmp_path)).finetune.research == paths
  assert [os.stat(p).st_mtime_ns for p in paths] == made  # not made again


def test_drafts_are_guesses_or_any_chitchat_turn_and_never_change_the_research(tools):
  made = [research_data.arithmetic(random.Random(seed), tools, drafts=['nice weather today'])
          for seed in range(300)]
  drafts = [item.transcript[1].text for item in made]
  assert 'nice weather today' in drafts and any(d.startswith('I think it is') for d in drafts)
  holding_the_operands = echoing_the_expression = 0
  for item, draft in zip(made, drafts):
    assert _research_lines(item) == [('TS', item.fact), ('User', f'{item.answer}.')]
    if draft == 'nice weather today':
      continue
    # A draft's claim is always wrong: no number in it is the answer.
    assert item.answer not in re.findall(r'-?\d+', draft), draft
    expressions = re.findall(r'\d+(?:[-+*/]\d+)+', draft)
    if draft.endswith('.'):  # a guess, or the question's numbers garbled beside one
      # no expression in it is the question's, so the lines can copy nothing from it
      assert item.fact not in expressions, draft
      holding_the_operands += set(re.findall(r'\d+', item.fact)) <= set(re.findall(r'\d+', draft))
    else:  # the expression echoed, as stage two's Base drafts it: still asked, never answered
      echoing_the_expression += item.fact in expressions
  assert holding_the_operands > 30  # the question's own numbers, beside a wrong result
  assert echoing_the_expression > 10


_OPERATION = r'\d+ (?:plus|and|\+|minus|-|times|x|\*|divided by|/) \d+'


def _skeleton(kind, question, fact, title):
  """The question, lower-cased, with what it asks about cut out: its phrasing."""
  question = question.lower()
  if kind == 'arithmetic':
    return re.sub(_OPERATION, '<>', question)
  if kind == 'lookup':
    return question.replace(title.lower(), '<>')
  word, language = fact.split(':')
  return question.replace(word.lower(), '<>').replace(language, '<language>')


def test_new_phrasings_ask_the_held_out_facts_in_sentences_training_never_used(tools, tmp_path):
  def title(record):
    return next(t['text'].removeprefix('TS, ') for t in record['transcript']
                if t['speaker'] == 'LAMDA-RESEARCH')

  def skeleton(record, question):
    return _skeleton(record['kind'], question, record['fact'], title(record))

  # Every phrasing the generator writes (ten seeds' dialogs), and one seed's
  # dialogs all held out, so each kind is asked anew.
  made = [item.to_json() for seed in range(10)
          for item in research_data.generate(tools, per_kind=30, seed=seed)]
  written = {skeleton(r, r['transcript'][0]['text']) for r in made if r['kind'] != 'chitchat'}
  assert len(written) > 300  # many sentences, greetings and thanks around them
  paths = research_data.export(research_data.generate(tools, per_kind=30, seed=3),
                               str(tmp_path / 'corpora'), eval_fraction=1.0)
  held_out = {json.loads(line)['fact']: json.loads(line) for line in open(paths['validation'])
              if json.loads(line)['kind'] != 'chitchat'}
  out = research_data.write_new_phrasings(paths['validation'], str(tmp_path / 'eval'))
  asked = [json.loads(line) for line in open(out)]
  assert len(asked) == len(held_out) and {'arithmetic', 'lookup'} <= {a['kind'] for a in asked}
  for item in asked:
    original = held_out[item['fact']]
    question = item['context'][0]['text']
    assert (item['kind'], item['answer']) == (original['kind'], original['answer'])
    assert question == item['phrasing'].format(*original['subject'])
    assert item['phrasing'] in research_data.NEW_PHRASINGS[item['kind']]
    # No kind's training dialog holds the sentence, even inside a greeting or thanks.
    phrasing = skeleton(original, question).rstrip('?')
    assert not any(phrasing in seen for seen in written), question
    if item['kind'] == 'arithmetic':  # the same numbers and operator word are asked
      assert re.findall(_OPERATION, question) == re.findall(
          _OPERATION, original['transcript'][0]['text'])
    elif item['kind'] == 'lookup':
      assert title(original) in question

  # What --mode eval_grounded reads for `embedded:research_new_phrasings`.
  config = tiny_docs.get_config()
  config.finetune.update(research=('embedded:research',), research_per_kind=30)
  config.research.update(questions='embedded:research_new_phrasings', max_questions=1000)
  config.decode.from_run = str(tmp_path / 'run')
  experiment = config_lib.load(config)
  in_run = research_data.embedded_files(experiment, str(tmp_path / 'run'))['validation']
  os.makedirs(os.path.dirname(in_run))
  os.replace(paths['validation'], in_run)
  path, questions = groundedness.read_questions(experiment, str(tmp_path / 'eval2'))
  assert path.endswith('-new-phrasings.jsonl')
  assert sorted(q.context[0].text for q in questions) == sorted(
      a['context'][0]['text'] for a in asked)


def test_each_dialog_records_the_subject_its_question_asks(tools):
  """new_phrasing asks anew from `subject`, so it must be what the question
  was filled with; a record without it is refused by name."""
  made = [item.to_json() for item in research_data.generate(tools, per_kind=30, seed=1)]
  asked = [r for r in made if r['kind'] != 'chitchat']
  assert {r['kind'] for r in asked} == {'arithmetic', 'lookup', 'translation'}
  for record in asked:
    question = record['transcript'][0]['text'].lower()
    assert record['subject'] and all(part.lower() in question for part in record['subject'])
  arithmetic = next(r for r in asked if r['kind'] == 'arithmetic')
  assert re.fullmatch(_OPERATION, arithmetic['subject'][0])
  del arithmetic['subject']
  with pytest.raises(ValueError, match='subject'):
    research_data.new_phrasing(arithmetic)


def test_an_unknown_embedded_question_set_is_a_config_error():
  config = tiny_docs.get_config()
  config.research.questions = 'embedded:research_new'
  with pytest.raises(config_lib.ConfigError, match=r'research\.questions'):
    config_lib.load(config)
