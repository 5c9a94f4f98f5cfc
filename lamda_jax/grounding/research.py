"""The LaMDA-Base -> LaMDA-Research protocol (§6.2, Figure 3), independent of
the model that speaks it.

The transcript is a dialog in the one dialog format (`data/dialog.py`), with
the paper's speakers:

    A: How old is Rafael Nadal?
    LAMDA-BASE: He is 35.
    LAMDA-RESEARCH: TS, Rafael Nadal's age
    TS: Rafael Nadal is a Spanish tennis player born on 3 June 1986. https://...
    LAMDA-RESEARCH: User, He is 38, born on 3 June 1986.

`ask` (the model, or a scripted stand-in in tests) is given the transcript so
far and writes the next LAMDA-RESEARCH line. Its rules, each counted in
`Research.events`:

- `TS, <query>` runs the toolset; each result becomes a `TS: <result>` turn and
  a query with no result a bare `TS:` turn ('empty_result'). The toolset's
  conversation state carries across steps, so asking again gets the next snippet.
- `User, <reply>` ends the loop: the reply is the answer.
- After `max_steps` toolset calls, or after a `TS,` line with an empty query
  ('empty_query'), the model is asked once more with the line forced to start
  `User, ` ('step_cap').
- A line of neither form ('malformed'), or no answer after the forced one,
  ends the loop with the draft as the reply ('draft_used').
- A result longer than `max_result_chars` is cut there ('result_cut'), so the
  transcript stays within the context window.

The reply cites the URL of the latest result it shares a word or number with
(`citation`), or nothing.
"""

import collections
import dataclasses
import re

from absl import logging

from lamda_jax.data import dialog
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.data.dialog import Turn

BASE, RESEARCH, TOOLSET = dialog.BASE_SPEAKER, dialog.RESEARCH_SPEAKER, tokenizer_lib.TOOLSET
_LINE = re.compile(rf'^\s*({tokenizer_lib.TOOLSET}|{tokenizer_lib.USER}),\s*(.*?)\s*$', re.S)
_URL = re.compile(r'(?:https?://|urn:)\S+$')
_WORD = re.compile(r'[^\W_]+')  # letters and digits of any script: 'déçu', 'à'
_COMMON = frozenset('a an and are as at be by for from has have he her his in is it its of on or '
                    'she that the their they this to was were which with'.split())


@dataclasses.dataclass(frozen=True)
class Research:
  reply: str
  transcript: tuple[Turn, ...]  # context, the draft, and every research and TS turn
  calls: int  # toolset calls made
  citation: str  # the URL the reply rests on, or ''
  events: dict  # rule -> times it applied


def parse_line(line: str) -> tuple[str, str] | None:
  """('TS', query) or ('User', reply) of a LAMDA-RESEARCH line; None for neither form."""
  match = _LINE.match(line)
  return (match[1], match[2]) if match else None


def words(text: str) -> list[str]:
  """The lowercased words and numbers of `text`, in order (accents kept, so
  a French or German answer is matched whole, never as ASCII fragments)."""
  return _WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
  """Its words and numbers less the commonest English words."""
  return set(words(text)) - _COMMON


def split_url(result: str) -> tuple[str, str]:
  """(text, url) of a toolset result; url '' when it has none (a calculation)."""
  url = _URL.search(result)
  return (result[:url.start()].rstrip(), url[0]) if url else (result, '')


def citation(reply: str, transcript) -> str:
  """The URL of the latest TS result sharing a word or number (not a common
  word) with the reply; '' when none does."""
  reply_words = content_words(reply)
  for turn in reversed(transcript):
    text, url = split_url(turn.text) if turn.speaker == TOOLSET else ('', '')
    if url and reply_words & set(words(text)):
      return url
  return ''


def run(context, draft: str, ask, toolset, conversation, max_steps: int = 4,
        max_result_chars: int = 400) -> Research:
  """The research loop for one reply. `ask(transcript, forced_prefix)` returns
  the next LAMDA-RESEARCH line (beginning with `forced_prefix` when one is
  given); `toolset.query(query, conversation)` the results of a query."""
  transcript = list(context) + [Turn(BASE, draft)]
  events, calls, forced = collections.Counter(), 0, ''
  while True:
    line = ask(tuple(transcript), forced)
    parsed = parse_line(line)
    if parsed is None or (forced and parsed[0] != tokenizer_lib.USER):
      events['malformed'] += parsed is None
      events['draft_used'] += 1
      logging.info('Research line %r cannot be taken (expected %s); the draft answers.',
                   line[:80], 'User, <reply>' if forced else '"TS, <query>" or "User, <reply>"')
      transcript.append(Turn(RESEARCH, f'{tokenizer_lib.USER}, {draft}'))
      return Research(draft, tuple(transcript), calls, citation(draft, transcript), dict(+events))
    kind, text = parsed
    transcript.append(Turn(RESEARCH, f'{kind}, {text}'))
    if kind == tokenizer_lib.USER:
      return Research(text, tuple(transcript), calls, citation(text, transcript), dict(+events))
    if not text:
      events['empty_query'] += 1
    else:
      calls += 1
      results = toolset.query(text, conversation)
      events['empty_result'] += not results
      for result in results or ['']:
        events['result_cut'] += len(result) > max_result_chars
        transcript.append(Turn(TOOLSET, result[:max_result_chars]))
    if not text or calls >= max_steps:
      events['step_cap'] += bool(text)
      forced = f'{tokenizer_lib.USER}, '
