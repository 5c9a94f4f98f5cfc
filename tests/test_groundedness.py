"""The groundedness metrics' rules on hand-worked replies, and `--mode eval_grounded` on a run."""

import dataclasses
import json

import pytest

from lamda_jax.data.dialog import Turn
from lamda_jax.grounding import groundedness
from tests.toolset_helpers import make_toolset

NADAL = 'Rafael Nadal is a Spanish tennis player born on 3 June 1986. https://example.org/nadal'
AGE = groundedness.Question((Turn('A', 'When was Rafael Nadal born?'),), '3 June 1986')
SUM = groundedness.Question((Turn('A', 'what is 135 plus 7721?'),), '7856', ('7,856',))


@pytest.mark.parametrize('reply, right', [
    ('He was born on 3 June 1986.', True), ('3 june 1986', True), ('June 3 1986', False),
    ('born 13 June 1986', False)])
def test_right_means_the_answers_words_in_order(reply, right):
  assert groundedness.is_right(reply, AGE) == right


@pytest.mark.parametrize('reply, right', [
    ('at in French is à.', True), ('at in French is a.', False), ('decu', False),
    ('cheated in French is déçu!', True), ('d u', False)])
def test_accented_answers_are_whole_words(reply, right):
  # 'à' and 'déçu' are words, not ASCII fragments ('d', 'u') or nothing at all.
  answer = 'à' if reply.startswith('at') else 'déçu'
  question = groundedness.parse_question({'context': [{'speaker': 'A', 'text': 'in French?'}],
                                          'answer': answer})
  assert groundedness.is_right(reply, question) == right


def test_alternatives_are_accepted():
  assert groundedness.is_right('It is 7,856.', SUM) and groundedness.is_right('7856', SUM)
  assert not groundedness.is_right('78 56', SUM)


def test_a_claim_is_supported_by_one_result_holding_its_numbers_and_most_words():
  # Content of the reply less the question's words: {spanish, player, 3, june, 1986}.
  judged = groundedness.judge('A Spanish player born on 3 June 1986.',
                              'https://example.org/nadal', [NADAL], AGE)
  assert judged == {'right': True, 'claim': True, 'supported': True, 'citable': True,
                    'cited': True}
  # A wrong number is never supported, however many words match.
  wrong = groundedness.judge('A Spanish player born on 4 June 1986.', '', [NADAL], AGE)
  assert wrong['claim'] and not wrong['supported'] and wrong['citable'] and not wrong['cited']
  # 4 of 5 content words (80%) is enough; 3 of 5 is not.
  assert groundedness.supports(NADAL, {'spanish', 'player', '1986', 'june', 'clay'})
  assert not groundedness.supports(NADAL, {'spanish', 'player', '1986', 'clay', 'red'})


def test_echoing_the_question_makes_no_claim():
  judged = groundedness.judge('When was Rafael Nadal born?', '', [NADAL], AGE)
  assert not judged['claim'] and not judged['supported'] and not judged['citable']


def test_a_calculation_supports_without_a_url_to_cite():
  judged = groundedness.judge('7856.', '', ['7856'], SUM)
  assert judged == {'right': True, 'claim': True, 'supported': True, 'citable': False,
                    'cited': False}


def test_summary_of_a_hand_built_table():
  rows = [dict(right=True, claim=True, supported=True, citable=True, cited=True),
          dict(right=True, claim=True, supported=True, citable=False, cited=False),
          dict(right=False, claim=True, supported=False, citable=True, cited=False),
          dict(right=False, claim=False, supported=False, citable=False, cited=False)]
  assert groundedness.summarize(rows, [1, 1, 2, 0]) == {
      'accuracy': 0.5, 'groundedness': 2 / 3, 'informativeness': 0.5,
      'citation_accuracy': 0.5, 'calls': 1.0, 'questions': 4}
  assert groundedness.summarize([], [])['accuracy'] is None


@pytest.mark.parametrize('record, message', [
    ({'context': [{'speaker': 'A', 'text': 'hi'}]}, 'answer'),
    ({'context': [{'speaker': 'A', 'text': 'hi'}], 'answer': '...'}, 'answer'),
    ({'context': [{'speaker': 'A', 'text': 'hi'}], 'answer': '1', 'alternatives': '2'},
     'alternatives'),
    ({'context': [{'speaker': 'A', 'text': 'hi'}], 'answer': '1', 'phrasing': 3}, 'phrasing'),
    ({'transcript': [{'speaker': 'LAMDA-BASE', 'text': 'x'},
                     {'speaker': 'LAMDA-RESEARCH', 'text': 'User, x'}], 'answer': 'x'},
     'transcript')])
def test_bad_question_records_name_the_field(record, message):
  with pytest.raises(ValueError, match=message):
    groundedness.parse_question(record)


def test_a_capped_sample_takes_each_kind_in_turn(a_run, tmp_path):
  experiment, _ = a_run
  path = tmp_path / 'questions.jsonl'
  path.write_text(''.join(json.dumps({'context': [{'speaker': 'A', 'text': f'q{i}'}],
                                      'answer': str(i), 'kind': kind}) + '\n'
                          for i, kind in enumerate(['sum'] * 3 + ['chitchat', 'lookup', 'lookup'])))
  experiment = dataclasses.replace(experiment, research=dataclasses.replace(
      experiment.research, questions=str(path), max_questions=4))
  _, questions = groundedness.read_questions(experiment, str(tmp_path))
  assert [(q.kind, q.answer) for q in questions] == [('sum', '0'), ('lookup', '4'), ('sum', '1'),
                                                      ('lookup', '5')]


def test_eval_grounded_answers_every_question_twice_and_writes_the_transcripts(a_run, tmp_path):
  experiment, run_dir = a_run
  questions = tmp_path / 'questions.jsonl'
  questions.write_text(''.join(json.dumps(r) + '\n' for r in [
      {'context': [{'speaker': 'A', 'text': 'what is 135 plus 7721?'}], 'answer': '7856',
       'kind': 'arithmetic', 'phrasing': 'what is {}?'},
      {'kind': 'lookup', 'fact': 'x', 'answer': 'Spanish tennis player', 'transcript': [
          {'speaker': 'A', 'text': 'who is Rafael Nadal?'},
          {'speaker': 'LAMDA-BASE', 'text': 'no idea'},
          {'speaker': 'LAMDA-RESEARCH', 'text': 'User, a Spanish tennis player'}]},
      {'kind': 'chitchat', 'answer': 'hi', 'context': [{'speaker': 'A', 'text': 'hello'}]}]))
  experiment = dataclasses.replace(
      experiment,
      decode=dataclasses.replace(experiment.decode, from_run=run_dir, num_candidates=2,
                                 max_new_tokens=8),
      research=dataclasses.replace(experiment.research, questions=str(questions),
                                   max_steps=2, max_line_tokens=10))
  summary = groundedness.run(experiment, str(tmp_path / 'eval'), make_toolset(tmp_path))
  lines = [json.loads(line) for line in open(summary['transcripts'], encoding='utf-8')]
  assert [line['kind'] for line in lines] == ['arithmetic', 'lookup']  # chitchat skipped
  assert set(summary) >= {'all', 'arithmetic', 'lookup'}
  assert summary['all']['base']['calls'] == 0 and summary['all']['base']['questions'] == 2
  assert summary['all']['research']['calls'] == sum(line['calls'] for line in lines) / 2
  for line in lines:
    assert line['transcript'][-1]['speaker'] == 'LAMDA-RESEARCH'
  # Per phrasing, for the questions that name one: the arithmetic one's own row.
  arithmetic = lines[0]
  assert arithmetic['phrasing'] == 'what is {}?' and lines[1]['phrasing'] == ''
  assert summary['by_phrasing'] == {'arithmetic': {'what is {}?': {
      'accuracy': float(arithmetic['judged']['research']['right']),
      'groundedness': float(arithmetic['judged']['research']['supported']) if
      arithmetic['judged']['research']['claim'] else None,
      'informativeness': float(arithmetic['judged']['research']['supported']),
      'citation_accuracy': float(arithmetic['judged']['research']['cited']) if
      arithmetic['judged']['research']['citable'] else None,
      'calls': float(arithmetic['calls']), 'questions': 1}}}
  assert json.load(open(tmp_path / 'eval' / 'eval_grounded.json', encoding='utf-8')) == summary
