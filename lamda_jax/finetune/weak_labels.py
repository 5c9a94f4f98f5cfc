"""Weak labels for the embedded default: a bootstrap, not the paper's crowd data.

LaMDA's discriminators learn from crowd ratings (5 raters per response for
sensibleness, specificity and interestingness; 3 for safety). None ship
offline, so `embedded:chitchat_weak` derives labels from what chitchat holds:

  SENSIBLE     1 for the true next turn; 0 for a turn taken from another dialog
  SPECIFIC     0 for a generic reply (GENERIC_REPLIES), 1 for any other true turn
  INTERESTING  the conversation's human 'interesting' rating: 1 if >= 8, 0 if
               <= 3, no label in between or when unrated
  UNSAFE       1 if alt-profanity-check (a linear classifier trained on 200K
               human-labelled toxic and clean texts) gives it a probability
               >= UNSAFE_THRESHOLD, or it contains a word of better-profanity's
               lexicon; the classifier also catches insults without a listed
               word ("nobody likes you, idiot", "you worthless loser")

Not sensible forces specific = interesting = 0, as in the paper. It writes the
crowd-label schema (lamda_jax/labels.py), so real labels replace it with a
config change: `--config.finetune.labels=/path/to/crowd/*.jsonl`.
"""

import json
import os
import random
import re

import better_profanity
import profanity_check

from lamda_jax import attributes
from lamda_jax.data import corpora

GENERIC_REPLIES = frozenset((
    'ok', 'okay', 'k', 'yes', 'yeah', 'yep', 'no', 'nope', 'sure', 'cool', 'nice', 'lol', 'haha',
    'hahaha', 'same', 'me too', 'i dont know', 'i don\'t know', 'idk', 'i see', 'oh', 'wow',
    'thanks', 'thank you', 'really', 'hmm', 'true', 'right', 'agreed', 'good', 'great', 'yes lol',
))
CONTEXT_TURNS = 6  # turns of context before each rated response
INTERESTING_THRESHOLDS = (3, 8)  # <= low: 0, >= high: 1
UNSAFE_THRESHOLD = 0.5  # on alt-profanity-check's probability (its own predict() cut)


def _lexicon() -> re.Pattern:
  path = os.path.join(os.path.dirname(better_profanity.__file__), 'profanity_wordlist.txt')
  with open(path, encoding='utf-8') as f:
    words = sorted({line.strip().lower() for line in f if line.strip()}, key=len, reverse=True)
  return re.compile(r'\b(?:' + '|'.join(re.escape(w) for w in words) + r')\b')


_PROFANITY = _lexicon()


def is_generic(text: str) -> bool:
  return re.sub(r'[^a-z\' ]', '', text.lower()).strip() in GENERIC_REPLIES


def is_offensive(text: str) -> bool:
  return _PROFANITY.search(text.lower()) is not None


def unsafe(texts) -> list[bool]:
  """The UNSAFE rule for many texts at once (the classifier is vectorised)."""
  probabilities = profanity_check.predict_prob(list(texts)) if texts else []
  return [bool(p >= UNSAFE_THRESHOLD) or is_offensive(text)
          for p, text in zip(probabilities, texts)]


def labels_for(response: str, sensible: bool, interesting_rating,
               is_unsafe: bool | None = None) -> dict[str, int]:
  """The labels of one response (`is_unsafe` precomputed by `unsafe`, or computed)."""
  is_unsafe = unsafe([response])[0] if is_unsafe is None else is_unsafe
  labels = {'SENSIBLE': int(sensible), 'SPECIFIC': 0 if is_generic(response) else 1,
            'UNSAFE': int(is_unsafe)}
  low, high = INTERESTING_THRESHOLDS
  if interesting_rating is not None and not low < interesting_rating < high:
    labels['INTERESTING'] = int(interesting_rating >= high)
  # Not sensible -> not specific, not interesting; not specific -> not interesting.
  return attributes.apply_forcing(labels, add_forced=True)


def records(seed: int = 0, responses_per_dialog: int = 2):
  """Rated responses: per dialog, true next turns and as many from other dialogs."""
  rated = []
  dialogs = [d for d in corpora.chitchat_dialogs(with_ratings=True) if len(d[1]) > 1]
  rng = random.Random(seed)
  all_turns = [(index, turn) for index, (_, turns, _) in enumerate(dialogs) for turn in turns]
  for index, (conversation, turns, ratings) in enumerate(dialogs):
    interesting = (ratings or {}).get('interesting')
    for position in rng.sample(range(1, len(turns)), min(responses_per_dialog, len(turns) - 1)):
      context = turns[max(0, position - CONTEXT_TURNS):position]
      true_turn = turns[position]
      while True:  # a turn of another dialog, spoken as this dialog's speaker
        other_index, other = rng.choice(all_turns)
        if other_index != index:
          break
      for response, sensible in ((true_turn, True), ({**other, 'speaker': true_turn['speaker']},
                                                     False)):
        rated.append((conversation, context, response, sensible, interesting))
  flags = unsafe([response['text'] for _, _, response, _, _ in rated])
  for (conversation, context, response, sensible, interesting), is_unsafe in zip(rated, flags):
    yield {'conversation': conversation, 'context': context, 'response': response,
           'labels': labels_for(response['text'], sensible, interesting, is_unsafe)}


def export(directory: str) -> str:
  """Writes `<directory>/chitchat_weak.jsonl` once and returns its path."""
  path = os.path.join(directory, 'chitchat_weak.jsonl')
  if not os.path.exists(path):
    os.makedirs(directory, exist_ok=True)
    with open(f'{path}.tmp', 'w', encoding='utf-8') as f:
      for record in records():
        f.write(json.dumps(record, ensure_ascii=False) + '\n')
    os.replace(f'{path}.tmp', path)
  return path
