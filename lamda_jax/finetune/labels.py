"""Crowd labels for fine-tuning, aggregated exactly as the paper does (§5, App. A).

One JSONL line per rated response (`conversation` is optional: responses of
one conversation stay in one split):

  {"conversation": "c17", "context": [{"speaker": "A", "text": "What's up?"}],
   "response": {"speaker": "B", "text": "not much."},
   "labels": {"SENSIBLE": 1, "SPECIFIC": 0}}                  final 0/1 labels, or
   "votes":  {"SENSIBLE": [1, 1, 0, 1, 1], "UNSAFE": [0, 0, 1]}  raw per-rater votes

Votes: SENSIBLE, SPECIFIC and INTERESTING have 5 raters (1 = yes); the label
is 1 when at least 3 say yes. UNSAFE has 3 raters (1 = found a violation of a
safety objective); the response is safe (UNSAFE 0) only when at least 2 of 3
found no violation. Then: not sensible forces specific = interesting = 0, and
not specific forces interesting = 0. Bad lines fail with file:line and field.
"""

import dataclasses
import json

from lamda_jax.data import dialog
from lamda_jax.finetune.formats import ATTRIBUTES

RATERS = {'SENSIBLE': 5, 'SPECIFIC': 5, 'INTERESTING': 5, 'UNSAFE': 3}


class LabelError(ValueError):
  """A labelled record is invalid; the message starts with file:line."""


@dataclasses.dataclass(frozen=True)
class RatedResponse:
  context: tuple[dialog.Turn, ...]
  response: dialog.Turn
  labels: dict  # attribute -> 0/1, only the attributes the record rates
  origin: str
  conversation: str  # the split key


def aggregate_votes(votes: dict[str, list[int]]) -> dict[str, int]:
  """Per-rater votes -> final labels, with the paper's thresholds and forcing rules."""
  labels = {}
  for attribute, attribute_votes in votes.items():
    if attribute == 'UNSAFE':
      found_no_violation = sum(1 for vote in attribute_votes if vote == 0)
      labels[attribute] = 0 if found_no_violation >= 2 else 1
    else:
      labels[attribute] = 1 if sum(attribute_votes) >= 3 else 0
  return apply_forcing(labels)


def apply_forcing(labels: dict[str, int]) -> dict[str, int]:
  """Not sensible -> not specific, not interesting; not specific -> not interesting."""
  labels = dict(labels)
  if labels.get('SENSIBLE') == 0:
    labels.update({a: 0 for a in ('SPECIFIC', 'INTERESTING') if a in labels})
  if labels.get('SPECIFIC') == 0 and 'INTERESTING' in labels:
    labels['INTERESTING'] = 0
  return labels


def _turn(value, field: str) -> dialog.Turn:
  if not (isinstance(value, dict) and isinstance(value.get('speaker'), str)
          and isinstance(value.get('text'), str) and value['text'].strip()):
    raise ValueError(f'{field}: needs {{"speaker": str, "text": non-empty str}}')
  return dialog.Turn(value['speaker'], value['text'])


def _check_attributes(mapping, field: str):
  if not isinstance(mapping, dict) or not mapping:
    raise ValueError(f'{field}: needs an object of attribute -> value')
  for attribute in mapping:
    if attribute not in ATTRIBUTES:
      raise ValueError(f'{field}.{attribute}: unknown attribute; expected one of '
                       f'{", ".join(ATTRIBUTES)}')


def parse_context(record) -> tuple[dialog.Turn, ...]:
  """The `context` turns of a record; ValueError names the field."""
  if not isinstance(record, dict):
    raise ValueError('not a JSON object')
  context = record.get('context')
  if not isinstance(context, list):
    raise ValueError('context: needs a list of turns')
  return tuple(_turn(turn, f'context[{i}]') for i, turn in enumerate(context))


def parse_exchange(record) -> tuple[tuple[dialog.Turn, ...], dialog.Turn]:
  """(context, response) of a record; ValueError names the field."""
  return parse_context(record), _turn(record.get('response'), 'response')


def parse_record(record) -> tuple[tuple[dialog.Turn, ...], dialog.Turn, dict[str, int]]:
  """(context, response, labels) of one record; ValueError names the field."""
  turns, response = parse_exchange(record)
  if ('labels' in record) == ('votes' in record):
    raise ValueError('needs exactly one of "labels" (final 0/1) or "votes" (per rater)')
  if 'labels' in record:
    _check_attributes(record['labels'], 'labels')
    for attribute, label in record['labels'].items():
      if label not in (0, 1) or isinstance(label, bool):
        raise ValueError(f'labels.{attribute}: must be 0 or 1, got {label!r}')
    return turns, response, apply_forcing(record['labels'])
  _check_attributes(record['votes'], 'votes')
  for attribute, votes in record['votes'].items():
    if not isinstance(votes, list) or len(votes) != RATERS[attribute]:
      raise ValueError(f'votes.{attribute}: needs {RATERS[attribute]} votes, got {votes!r}')
    for vote in votes:
      if vote not in (0, 1) or isinstance(vote, bool):
        raise ValueError(f'votes.{attribute}: every vote must be 0 or 1, got {vote!r}')
  return turns, response, aggregate_votes(record['votes'])


def read_lines(path: str, parse):
  """(origin, record, parse(record)) per line; the first bad one raises
  LabelError('file:line: field: problem')."""
  with open(path, 'rb') as f:
    for number, raw in enumerate(f, start=1):
      if not raw.strip():
        continue
      origin = f'{path}:{number}'
      try:
        record = json.loads(raw.decode('utf-8'))
        yield origin, record, parse(record)
      except UnicodeDecodeError as error:
        raise LabelError(f'{origin}: invalid UTF-8 (byte {error.start})') from None
      except json.JSONDecodeError as error:
        raise LabelError(f'{origin}: malformed JSON ({error.msg})') from None
      except ValueError as error:
        raise LabelError(f'{origin}: {error}') from None


def read(path: str):
  """RatedResponses of a labels file; the first bad line raises LabelError."""
  for origin, record, (context, response, labels) in read_lines(path, parse_record):
    yield RatedResponse(context, response, labels, origin, str(record.get('conversation', origin)))
