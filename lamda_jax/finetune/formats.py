"""The paper's fine-tuning texts (§5, §6.1) as token sequences with loss weights.

  generator:      <context> RESPONSE <response>            loss on the response and EOS
  discriminator:  <context> RESPONSE <response> SENSIBLE 1  loss on the rating only

e.g. `What's up? RESPONSE not much.` and `What's up? RESPONSE not much. SENSIBLE 1`.
The context is the previous turns in the dialog format (`lamda_jax/data/dialog.py`);
the response is the reply's text. The sentinel and attribute names are
ordinary words of the project's tokenizer (one piece each), and so are the
ratings '0' and '1', so a discriminator example's loss sits on exactly one
token. Parts are tokenized separately, so the response always starts at a
known position; too long a context loses whole turns from the left, then
tokens from the left, never any of the response.
"""

from lamda_jax import attributes
from lamda_jax.data import dialog
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.data.packing import Example


class TooLong(ValueError):
  """The response (with its suffix) cannot fit in a row even without context."""


def context_ids(tokenizer, turns, room: int) -> list[int]:
  """`<context> RESPONSE` in at most `room` tokens: whole turns dropped from the
  left first, then tokens from the left of what remains."""
  for first in range(len(turns) + 1):
    ids = tokenizer.encode(f'{dialog.render(turns[first:])} {tokenizer_lib.RESPONSE}'.lstrip())
    if len(ids) <= room:
      return ids
  return ids[len(ids) - room:]


def _example(tokenizer, context_turns, response: str, suffix: list[int], suffix_weights,
             seq_len: int, weigh_response: bool) -> Example:
  response_ids = tokenizer.encode(response)
  tail = response_ids + suffix
  room = seq_len - len(tail)
  if room < 1:
    raise TooLong(f'response of {len(tail)} tokens (with its suffix) exceeds seq_len {seq_len}')
  context = context_ids(tokenizer, list(context_turns), room)
  weights = [0.0] * len(context) + [float(weigh_response)] * len(response_ids) + suffix_weights
  return Example(tuple(context + tail), tuple(weights))


def generator_example(tokenizer, context_turns, response: str, seq_len: int,
                      task_id: int = 0) -> Example:
  """`<context> RESPONSE <response>` + EOS; loss on the response and EOS."""
  example = _example(tokenizer, context_turns, response, [tokenizer_lib.EOS_ID], [1.0], seq_len,
                     weigh_response=True)
  return Example(example.tokens, example.loss_weights, task_id)


def rating_suffix(tokenizer, attribute: str, rating: int) -> list[int]:
  """The tokens of `<ATTRIBUTE> <rating>`, checked to end in the rating's single piece."""
  if attribute not in attributes.BY_NAME:
    raise ValueError(f'unknown attribute {attribute!r}; expected one of '
                     f'{", ".join(attributes.NAMES)}')
  if rating not in (0, 1):
    raise ValueError(f'rating must be 0 or 1, got {rating!r}')
  suffix = tokenizer.encode(f'{attribute} {rating}')
  if tokenizer.id_to_piece(suffix[-1]) != str(rating):
    raise ValueError(f'the tokenizer does not end "{attribute} {rating}" with the single piece '
                     f'{rating!r}; train it with lamda_jax.tokenizer (special symbols)')
  return suffix


def discriminator_example(tokenizer, context_turns, response: str, attribute: str, rating: int,
                          seq_len: int, task_id: int = 0,
                          discriminator: str = 'rating_token') -> Example:
  """`<context> RESPONSE <response> <ATTRIBUTE> <rating>`; loss on the rating only.

  For discriminator heads (`discriminator='heads'`) the rating's target is the
  label itself (0 or 1), which the heads' loss reads (training/losses.py); it
  is the segment's last token, so no position ever sees it as input.
  """
  suffix = rating_suffix(tokenizer, attribute, rating)
  if discriminator == 'heads':
    suffix = suffix[:-1] + [rating]
  weights = [0.0] * (len(suffix) - 1) + [1.0]
  example = _example(tokenizer, context_turns, response, suffix, weights, seq_len,
                     weigh_response=False)
  return Example(example.tokens, example.loss_weights, task_id)


def research_pieces(tokenizer, transcript) -> list[tuple[list[int], bool]]:
  """A research transcript (§6.2) as (token ids, is the model's own line) pieces:
  each turn's `<speaker>:` and its text tokenized apart, turns joined by the
  newline's tokens. The research loop prompts with exactly these pieces, so
  what it decodes is what the research task trained."""
  newline = tokenizer.encode('\n')
  pieces = []
  for index, turn in enumerate(transcript):
    pieces.append(((newline if index else []) + tokenizer.encode(f'{turn.speaker}:'), False))
    pieces.append((tokenizer.encode(turn.text), turn.speaker == dialog.RESEARCH_SPEAKER))
  return pieces


def parse_research(record) -> tuple:
  """The transcript of a research record, {"transcript": [turns], ...}: Turns,
  with at least one LAMDA-RESEARCH line; ValueError names the field."""
  if not isinstance(record, dict) or not isinstance(record.get('transcript'), list):
    raise ValueError('transcript: needs a list of turns')
  transcript = tuple(dialog.parse_turn(turn, f'transcript[{i}]')
                     for i, turn in enumerate(record['transcript']))
  if not any(turn.speaker == dialog.RESEARCH_SPEAKER for turn in transcript):
    raise ValueError(f'transcript: has no {dialog.RESEARCH_SPEAKER} turn')
  return transcript


def research_examples(tokenizer, transcript, seq_len: int, task_id: int = 0) -> list[Example]:
  """The rendered transcript + EOS; loss on the LAMDA-RESEARCH lines the model
  writes (`TS, <query>`, `User, <reply>`) and on what ends each of them (the
  next newline, or EOS after the last), never on the context, the draft or the
  toolset's results.

  One row when it fits in `seq_len`. A longer transcript gives one row per
  research line, ending where the line ends, cut from the left, with loss on
  that line alone: every line is learnt once, from as much of what came before
  as fits. A line that cannot fit with its end is TooLong."""
  newline = tokenizer.encode('\n')
  tokens, weights, spans, after_research = [], [], [], False
  for ids, is_research in research_pieces(tokenizer, transcript):
    ending = len(newline) if after_research and ids[:len(newline)] == newline else 0
    if ending:
      spans[-1][1] += ending
    if is_research:
      spans.append([len(tokens) + ending, len(tokens) + len(ids)])
    tokens += ids
    weights += [1.0] * ending + [float(is_research)] * (len(ids) - ending)
    after_research = is_research
  tokens.append(tokenizer_lib.EOS_ID)
  weights.append(float(after_research))
  spans[-1][1] += after_research
  if len(tokens) <= seq_len:
    return [Example(tuple(tokens), tuple(weights), task_id)]
  rows = []
  for start, end in spans:
    if end - start > seq_len:
      raise TooLong(f'a research line of {end - start} tokens (with its end) exceeds '
                    f'seq_len {seq_len}')
    first = max(0, end - seq_len)
    rows.append(Example(tuple(tokens[first:end]), tuple(
        float(start <= i < end) for i in range(first, end)), task_id))
  return rows
