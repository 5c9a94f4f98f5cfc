"""The paper's generator/discriminator texts, their loss masks, and label aggregation."""

import json

import numpy as np
import pytest

from lamda_jax import attributes
from lamda_jax.data import builders, corpora, dialog, packing
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import formats, labels

CONTEXT = (Turn('A', "What's up?"),)


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp('tokenizer') / 'sp.model'
  return tokenizer_lib.train(list(corpora.python_docs().values())[:30], 800, str(path))


def _weighted_text(tokenizer, example):
  return [tokenizer.id_to_piece(t) for t, w in zip(example.tokens, example.loss_weights) if w]


def test_generator_example_weighs_only_the_response_and_eos(tokenizer):
  example = formats.generator_example(tokenizer, CONTEXT, 'not much.', seq_len=64)
  assert tokenizer.decode(list(example.tokens)) == "A: What's up? RESPONSE not much."
  prefix = tokenizer.encode("A: What's up? RESPONSE")
  response = tokenizer.encode('not much.')
  assert list(example.tokens) == prefix + response + [tokenizer_lib.EOS_ID]
  assert list(example.loss_weights) == [0.0] * len(prefix) + [1.0] * (len(response) + 1)
  assert tokenizer.decode([t for t, w in zip(example.tokens, example.loss_weights) if w]) == (
      'not much.')


def test_discriminator_example_weighs_only_the_rating(tokenizer):
  for attribute in attributes.NAMES:
    for rating in (0, 1):
      example = formats.discriminator_example(tokenizer, CONTEXT, 'not much.', attribute,
                                                      rating, seq_len=64)
      assert tokenizer.decode(list(example.tokens)) == (
          f"A: What's up? RESPONSE not much. {attribute} {rating}")
      assert sum(example.loss_weights) == 1.0 and example.loss_weights[-1] == 1.0
      assert _weighted_text(tokenizer, example) == [str(rating)]


def test_packed_weights_land_on_the_targets_of_the_response(tokenizer):
  example = formats.generator_example(tokenizer, CONTEXT, 'not much.', seq_len=64)
  row = {field: values[None] for field, values in next(packing.pack_rows([example], 64)).items()}
  weighted = row['targets'][0][row['loss_weights'][0] > 0]
  assert tokenizer.decode([int(t) for t in weighted]) == 'not much.'
  first = int(np.argmax(row['loss_weights'][0]))  # predicted from the last context token
  assert tokenizer.id_to_piece(int(row['inputs'][0][first])) == 'RESPONSE'


def test_long_context_loses_turns_from_the_left_never_the_response(tokenizer):
  context = tuple(Turn('AB'[i % 2], f'turn number {i} says something') for i in range(30))
  example = formats.generator_example(tokenizer, context, 'the reply stays whole',
                                              seq_len=48)
  text = tokenizer.decode(list(example.tokens))
  assert len(example.tokens) <= 48
  assert text.endswith('turn number 29 says something RESPONSE the reply stays whole')
  assert 'turn number 0 ' not in text
  assert text[:3] in ('A: ', 'B: ')  # whole turns were dropped, not half a turn


def test_a_response_too_long_for_a_row_is_refused(tokenizer):
  with pytest.raises(formats.TooLong, match='exceeds seq_len 16'):
    formats.generator_example(tokenizer, CONTEXT, 'word ' * 40, seq_len=16)


@pytest.mark.parametrize('votes,want', [
    ({'SENSIBLE': [1, 1, 0, 1, 1], 'SPECIFIC': [1, 1, 1, 0, 0], 'INTERESTING': [0, 1, 1, 1, 0]},
     {'SENSIBLE': 1, 'SPECIFIC': 1, 'INTERESTING': 1}),  # 3 of 5 is enough
    ({'SENSIBLE': [1, 1, 0, 0, 0], 'SPECIFIC': [1, 1, 1, 1, 1], 'INTERESTING': [1, 1, 1, 1, 1]},
     {'SENSIBLE': 0, 'SPECIFIC': 0, 'INTERESTING': 0}),  # not sensible forces the rest to 0
    ({'SENSIBLE': [1, 1, 1, 1, 1], 'SPECIFIC': [0, 0, 1, 1, 0], 'INTERESTING': [1, 1, 1, 1, 1]},
     {'SENSIBLE': 1, 'SPECIFIC': 0, 'INTERESTING': 0}),  # not specific forces interesting to 0
    ({'UNSAFE': [0, 0, 1]}, {'UNSAFE': 0}),  # 2 of 3 found no violation: safe
    ({'UNSAFE': [0, 1, 1]}, {'UNSAFE': 1}),
    ({'UNSAFE': [0, 0, 0]}, {'UNSAFE': 0}),
    ({'UNSAFE': [1, 1, 1]}, {'UNSAFE': 1}),
])
def test_vote_aggregation_is_the_papers(votes, want):
  assert attributes.aggregate_votes(votes) == want


def _labels_file(tmp_path, *records):
  path = tmp_path / 'labels.jsonl'
  path.write_bytes(b''.join(r if isinstance(r, bytes) else (json.dumps(r) + '\n').encode()
                            for r in records))
  return str(path)


GOOD = {'context': [{'speaker': 'A', 'text': "What's up?"}],
        'response': {'speaker': 'B', 'text': 'not much.'}}


def test_reading_final_labels_and_votes(tmp_path):
  path = _labels_file(tmp_path, {**GOOD, 'labels': {'SENSIBLE': 0, 'INTERESTING': 1}},
                      {**GOOD, 'votes': {'SENSIBLE': [1, 1, 1, 0, 0], 'UNSAFE': [1, 0, 0]}})
  first, second = labels.read(path)
  assert first.labels == {'SENSIBLE': 0, 'INTERESTING': 0}  # forcing applies to final labels
  assert second.labels == {'SENSIBLE': 1, 'UNSAFE': 0}
  assert second.context == (Turn('A', "What's up?"),) and second.response == Turn('B', 'not much.')
  assert second.origin == f'{path}:2'


@pytest.mark.parametrize('record,message', [
    ({'response': GOOD['response'], 'labels': {'SENSIBLE': 1}}, 'context: needs a list of turns'),
    ({'context': GOOD['context'], 'labels': {'SENSIBLE': 1}}, 'response: needs'),
    ({**GOOD, 'context': [{'speaker': 'A'}], 'labels': {'SENSIBLE': 1}}, r'context\[0\]: needs'),
    ({**GOOD}, 'needs exactly one of "labels"'),
    ({**GOOD, 'labels': {'FUNNY': 1}}, 'labels.FUNNY: unknown attribute'),
    ({**GOOD, 'labels': {'SENSIBLE': 2}}, 'labels.SENSIBLE: must be 0 or 1, got 2'),
    ({**GOOD, 'votes': {'SENSIBLE': [1, 1, 2, 1, 1]}}, 'votes.SENSIBLE: every vote must be 0 or 1'),
    ({**GOOD, 'votes': {'SENSIBLE': [1, 1, 1]}}, 'votes.SENSIBLE: needs 5 votes'),
    ({**GOOD, 'votes': {'UNSAFE': [0, 0, 0, 0, 0]}}, 'votes.UNSAFE: needs 3 votes'),
    ({**GOOD, 'votes': {'SAFE': [0, 0, 0]}}, 'votes.SAFE: unknown attribute'),
    (b'{"context": [\n', r'malformed JSON'),
])
def test_bad_label_files_fail_with_file_and_line(tmp_path, record, message):
  path = _labels_file(tmp_path, {**GOOD, 'labels': {'SENSIBLE': 1}}, record)
  with pytest.raises(dialog.RecordError, match=f'^{path}:2: {message}'):
    list(labels.read(path))


def test_the_tfds_labels_builder_keeps_every_record_and_splits_by_conversation(tmp_path):
  """Prepared labels equal the file read directly; a conversation stays in one split."""
  rng = np.random.default_rng(0)
  records = []
  for i in range(60):
    record = {**GOOD, 'conversation': f'c{i // 3}', 'context': [
        {'speaker': 'A', 'text': f'question {i}'}]}
    record['votes' if i % 2 else 'labels'] = (
        {'SENSIBLE': rng.integers(0, 2, 5).tolist(), 'UNSAFE': rng.integers(0, 2, 3).tolist()}
        if i % 2 else {'SPECIFIC': int(rng.integers(0, 2)), 'SENSIBLE': 1})
    records.append(record)
  path = _labels_file(tmp_path, *records)
  splits = labels.prepare_labels('finetune.labels', [path], str(tmp_path / 'tfds'), 0.3)
  direct = {r.origin: r for r in labels.read(path)}
  prepared = [r for split in splits.values() for r in split]
  assert sorted(r.origin for r in prepared) == sorted(direct)
  for split, found in splits.items():
    for record in found:
      assert record == direct[record.origin]  # context, response, labels, conversation
      assert (split == 'validation') == builders.held_out(record.conversation, 0.3)
  assert set(splits) == {'train', 'validation'}


def test_the_tfds_labels_builder_counts_bad_lines_and_keeps_the_rest(tmp_path):
  path = _labels_file(tmp_path, {**GOOD, 'labels': {'SENSIBLE': 1}},
                      {**GOOD, 'votes': {'UNSAFE': [0, 1]}},
                      b'{"context": [{"speaker": "A", "text": "\\udc00"}]}\n',
                      {**GOOD, 'labels': {'SPECIFIC': 0}})
  splits = labels.prepare_labels('eval.labels', [path], str(tmp_path / 'tfds'), 1e-6)
  assert sorted(r.origin for r in splits['train']) == [f'{path}:1', f'{path}:4']
  report = json.loads(next((tmp_path / 'tfds').glob('labels-*/bad_records.json')).read_text())
  assert report == {'votes.UNSAFE: needs 3 votes, got [0, 1]': [f'{path}:2'],
                    'a lone surrogate U+DC00 in a string': [f'{path}:3']}


RESEARCH_TRANSCRIPT = (Turn('A', 'what is 135 plus 7721?'), Turn('LAMDA-BASE', 'About 8000.'),
                       Turn('LAMDA-RESEARCH', 'TS, 135+7721'), Turn('TS', '7856'),
                       Turn('LAMDA-RESEARCH', 'User, 7856.'))


def test_research_example_weighs_exactly_the_research_lines_and_their_ends(tokenizer):
  example, = formats.research_examples(tokenizer, RESEARCH_TRANSCRIPT, 128)
  # Worked by hand: the two LAMDA-RESEARCH lines, the newline that ends the
  # first (the model must stop its line there) and the EOS that ends the last.
  newline = tokenizer.encode('\n')
  want = (tokenizer.encode('TS, 135+7721') + newline + tokenizer.encode('User, 7856.') +
          [tokenizer_lib.EOS_ID])
  assert [t for t, w in zip(example.tokens, example.loss_weights) if w] == want
  assert set(example.loss_weights) == {0.0, 1.0}
  text = tokenizer.decode(list(example.tokens))
  for unweighted in ('what is 135 plus 7721?', 'About 8000.', 'TS: 7856'):  # context, draft, result
    assert unweighted in text
  assert tokenizer.decode([t for t, w in zip(example.tokens, example.loss_weights) if not w]) \
      .count('7856') == 1  # the toolset's 7856 only; the reply's is weighted


def test_a_long_transcript_gives_a_row_per_research_line_or_refuses(tokenizer):
  full, = formats.research_examples(tokenizer, RESEARCH_TRANSCRIPT, 128)
  newline = tokenizer.encode('\n')
  first_line = tokenizer.encode('TS, 135+7721') + newline
  last_line = tokenizer.encode('User, 7856.') + [tokenizer_lib.EOS_ID]
  # Worked by hand: the first line ends where its newline ends, the second at EOS.
  rows = formats.research_examples(tokenizer, RESEARCH_TRANSCRIPT, 30)
  assert len(rows) == 2 and all(len(row.tokens) <= 30 for row in rows)
  for row, line in zip(rows, (first_line, last_line)):
    assert [t for t, w in zip(row.tokens, row.loss_weights) if w] == line
    assert list(row.tokens[-len(line):]) == line  # the row ends with its line
    # ... after as much of the transcript before it as fits.
    at = _find(full.tokens, row.tokens)
    assert at is not None and (len(row.tokens) == 30 or at == 0)
  with pytest.raises(formats.TooLong):
    formats.research_examples(tokenizer, RESEARCH_TRANSCRIPT, 5)


def _find(haystack, needle):
  for start in range(len(haystack) - len(needle) + 1):
    if tuple(haystack[start:start + len(needle)]) == tuple(needle):
      return start
  return None
