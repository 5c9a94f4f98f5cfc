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
import re

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


# The one rule for text read from JSONL files, whatever reads them: C0 and C1
# control characters (tab and newline aside) become spaces, since old text
# files carry backspace overstrikes and form feeds that lose nothing by it; a
# lone surrogate (an escaped "\\ud800" with no partner) cannot be UTF-8 and
# rejects its record.
_CONTROL = re.compile('[\x00-\x08\x0b-\x1f\x7f-\x9f]')
MAX_RECORD_BYTES = 16 << 20  # one line; a dialog or document larger than this is rejected
MAX_DEPTH = 32  # nesting of objects and lists; the schemas need 3


def cleaned_text(text: str) -> str:
  """The text under the rule above; ValueError for a lone surrogate."""
  try:
    text.encode('utf-8')
  except UnicodeEncodeError as error:
    raise ValueError(f'a lone surrogate U+{ord(text[error.start]):04X} in a string') from None
  return _CONTROL.sub(' ', text)


def _cleaned(value, depth: int = 1):
  """The record with control characters replaced; ValueError for a lone
  surrogate or nesting deeper than MAX_DEPTH."""
  if isinstance(value, str):
    return cleaned_text(value)
  if isinstance(value, (dict, list)):
    if depth > MAX_DEPTH:
      raise ValueError(f'JSON nested deeper than {MAX_DEPTH} levels')
    if isinstance(value, list):
      return [_cleaned(item, depth + 1) for item in value]
    return {_cleaned(key, depth + 1): _cleaned(item, depth + 1) for key, item in value.items()}
  return value


def _decoded(raw: bytes):
  """One line -> a cleaned JSON value; ValueError says what is wrong with it."""
  if len(raw) > MAX_RECORD_BYTES:
    raise ValueError(f'record larger than {MAX_RECORD_BYTES} bytes')
  try:
    return _cleaned(json.loads(raw.decode('utf-8')))
  except UnicodeDecodeError as error:
    raise ValueError(f'invalid UTF-8 (byte {error.start})') from None
  except json.JSONDecodeError as error:
    raise ValueError(f'malformed JSON ({error.msg})') from None
  except RecursionError:
    raise ValueError(f'JSON nested deeper than {MAX_DEPTH} levels') from None


def read_jsonl(path: str, parse, bad=None):
  """(origin 'path:line', record, parse(record)) per good line of a JSONL file:
  the one reader of every JSONL input.

  `parse` raises ValueError naming the field. With `bad` (builders.BadRecords)
  a bad line is counted by reason, named by file:line and skipped, and the
  rest of the file is used; without it the first bad line raises
  RecordError('file:line: problem'), for inputs that must be right throughout.
  """
  with open(path, 'rb') as f:
    for number, raw in enumerate(f, start=1):
      if not raw.strip():
        continue
      origin = f'{path}:{number}'
      try:
        record = _decoded(raw)
        if not isinstance(record, dict):
          raise ValueError('not a JSON object')
        parsed = parse(record)
      except ValueError as error:
        if bad is None:
          raise RecordError(f'{origin}: {error}') from None
        bad.add(origin, str(error))
        continue
      yield origin, record, parsed
