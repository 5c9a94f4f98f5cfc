"""The weak-label bootstrap: what each label means, and that it plugs in as crowd labels."""

import itertools

import pytest

from lamda_jax.data import corpora
from lamda_jax.finetune import labels, weak_labels


@pytest.mark.parametrize('text,generic', [('ok', True), ('Me too!', True), ("I don't know.", True),
                                          ('lol', True), ('I love hiking in the Alps', False)])
def test_generic_replies(text, generic):
  assert weak_labels.is_generic(text) == generic


@pytest.mark.parametrize('text,offensive', [('what the fuck', True), ('You ASSHOLE', True),
                                            ('have a nice day', False),
                                            ('a classic class assignment', False)])
def test_offensive_lexicon_matches_whole_words(text, offensive):
  assert weak_labels.is_offensive(text) == offensive


@pytest.mark.parametrize('text,want', [
    ('nobody likes you, idiot', True),  # no word of the lexicon: the classifier's catch
    ('you worthless loser', True),
    ('what the fuck', True),
    ('I hiked the Alps last summer', False),
    ('a classic class assignment', False),
])
def test_unsafe_by_the_classifier_or_the_lexicon(text, want):
  assert weak_labels.unsafe([text]) == [want]
  if 'idiot' in text or 'loser' in text:
    assert not weak_labels.is_offensive(text)  # the lexicon alone would miss it


@pytest.mark.parametrize('response,sensible,rating,want', [
    ('I hiked the Alps last summer', True, 9,
     {'SENSIBLE': 1, 'SPECIFIC': 1, 'INTERESTING': 1, 'UNSAFE': 0}),
    ('I hiked the Alps last summer', True, 2,
     {'SENSIBLE': 1, 'SPECIFIC': 1, 'INTERESTING': 0, 'UNSAFE': 0}),
    ('I hiked the Alps last summer', True, 5, {'SENSIBLE': 1, 'SPECIFIC': 1, 'UNSAFE': 0}),
    ('I hiked the Alps last summer', True, None, {'SENSIBLE': 1, 'SPECIFIC': 1, 'UNSAFE': 0}),
    ('ok', True, 9, {'SENSIBLE': 1, 'SPECIFIC': 0, 'INTERESTING': 0, 'UNSAFE': 0}),
    ('damn right', False, 9, {'SENSIBLE': 0, 'SPECIFIC': 0, 'INTERESTING': 0, 'UNSAFE': 1}),
])
def test_labels_follow_the_documented_rules(response, sensible, rating, want):
  assert weak_labels.labels_for(response, sensible, rating) == want


def test_exported_labels_plug_in_as_crowd_labels(tmp_path):
  rated = list(labels.read(weak_labels.export(str(tmp_path))))
  dialogs = {conversation: turns for conversation, turns in corpora.chitchat_dialogs()}
  assert len(rated) > 10_000
  positives = [r for r in rated if r.labels['SENSIBLE'] == 1]
  negatives = [r for r in rated if r.labels['SENSIBLE'] == 0]
  assert len(positives) == len(negatives)
  for record in itertools.islice(positives, 300):  # the true next turn of its own dialog
    turns = [(t['speaker'], t['text']) for t in dialogs[record.conversation]]
    context = [(t.speaker, t.text) for t in record.context]
    assert any(turn == (record.response.speaker, record.response.text) and
               turns[max(0, position - 6):position] == context
               for position, turn in enumerate(turns))
  foreign = sum(record.response.text not in {t['text'] for t in dialogs[record.conversation]}
                for record in negatives[:300])
  assert foreign >= 295  # taken from other dialogs (a generic 'ok' may occur in both)
