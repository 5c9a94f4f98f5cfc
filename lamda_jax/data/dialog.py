"""The one text form of a dialog, shared by pre-training, fine-tuning and chat.

Each turn is `<speaker>: <text>` and turns are separated by newlines:

    A: How are you doing today?
    B: im doing good

Speakers are kept as the data names them (chitchat's anonymous senders become
A, B, ... in order of appearance). A dialog in JSON is a list of
`{"speaker", "text"}` objects; `parse_context` reads one, naming the bad field.
"""

import dataclasses
import json

# The speakers of a research transcript (§6.2, Figure 3), besides the toolset's TS.
BASE_SPEAKER, RESEARCH_SPEAKER = 'LAMDA-BASE', 'LAMDA-RESEARCH'


@dataclasses.dataclass(frozen=True)
class Turn:
  speaker: str
  text: str


def render_turn(turn: Turn) -> str:
  return f'{turn.speaker}: {turn.text}'


def render(turns) -> str:
  return '\n'.join(render_turn(turn) for turn in turns)


class RecordError(ValueError):
  """A record of a strictly read JSONL file is invalid; the message starts with file:line."""


def parse_turn(value, field: str) -> Turn:
  """A `{"speaker": str, "text": non-empty str}` object; ValueError names the field."""
  if not (isinstance(value, dict) and isinstance(value.get('speaker'), str)
          and isinstance(value.get('text'), str) and value['text'].strip()):
    raise ValueError(f'{field}: needs {{"speaker": str, "text": non-empty str}}')
  return Turn(value['speaker'], value['text'])


def parse_context(record) -> tuple[Turn, ...]:
  """The `context` turns of a record; ValueError names the field."""
  if not isinstance(record, dict):
    raise ValueError('not a JSON object')
  context = record.get('context')
  if not isinstance(context, list):
    raise ValueError('context: needs a list of turns')
  return tuple(parse_turn(turn, f'context[{i}]') for i, turn in enumerate(context))


def read_records(path: str, parse):
  """(origin, record, parse(record)) per line of a JSONL file that must be
  right throughout; the first bad line raises RecordError('file:line: field: problem')."""
  with open(path, 'rb') as f:
    for number, raw in enumerate(f, start=1):
      if not raw.strip():
        continue
      origin = f'{path}:{number}'
      try:
        record = json.loads(raw.decode('utf-8'))
        yield origin, record, parse(record)
      except UnicodeDecodeError as error:
        raise RecordError(f'{origin}: invalid UTF-8 (byte {error.start})') from None
      except json.JSONDecodeError as error:
        raise RecordError(f'{origin}: malformed JSON ({error.msg})') from None
      except ValueError as error:
        raise RecordError(f'{origin}: {error}') from None
