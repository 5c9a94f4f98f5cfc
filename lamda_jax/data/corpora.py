"""Real text that installs offline: the embedded default's corpora.

Each corpus is exported to the same JSONL schemas a lab's own data uses
(`{"turns": [{"speaker", "text"}]}` for dialogs, `{"text"}` for documents), so
embedded and real data take one path through the TFDS builders.

  chitchat     7,168 English conversations (pip `chitchat-dataset`, MIT)
  wordnet      117K WordNet glosses (Debian `wordnet-base`): encyclopedic prose
  fortunes     15,218 fortune-file entries (Debian `fortunes`): short prose
  python_docs  Python's reference documentation (`pydoc_data`): code-related prose
"""

import glob
import json
import os
import pydoc_data.topics
import re

WORDNET_DIR = '/usr/share/wordnet'
FORTUNES_DIR = '/usr/share/games/fortunes'
DEBIAN_PACKAGES = {'wordnet': 'wordnet-base', 'fortunes': 'fortunes'}


class CorpusUnavailable(RuntimeError):
  """An embedded corpus whose system package is not installed."""


def python_docs() -> dict[str, str]:
  """Topic name -> text of Python's reference documentation, in a stable order.

  Some topics share one text ('if' and 'else'); each text is kept once, under
  its first name, so no document can land in both the train and eval splits.
  """
  docs, seen = {}, set()
  for name in sorted(pydoc_data.topics.topics):
    text = pydoc_data.topics.topics[name]
    if text not in seen:
      docs[name] = text
      seen.add(text)
  return docs


def chitchat_dialogs(with_ratings: bool = False):
  """(id, turns) per conversation, or (id, turns, ratings) with its human ratings
  (1-10 'interesting', 'witty', 'upbeat'; None when unrated). A turn joins one
  sender's consecutive messages; empty messages are dropped, and so are turns
  left with no text."""
  import chitchat_dataset  # pylint: disable=import-outside-toplevel  # 40 MB of JSON, loaded on use
  for conversation_id, conversation in sorted(chitchat_dataset.Dataset().items()):
    speakers = {}
    turns = []
    for messages in conversation['messages']:
      text = ' '.join(m['text'].strip() for m in messages if m['text'].strip())
      if text:
        speaker = speakers.setdefault(messages[0]['sender'], chr(ord('A') + len(speakers)))
        turns.append({'speaker': speaker, 'text': text})
    yield (conversation_id, turns, conversation.get('ratings')) if with_ratings else (
        conversation_id, turns)


def wordnet_glosses(directory: str = WORDNET_DIR):
  """(synset id, 'word, word: gloss') for every synset of WordNet's data files."""
  paths = sorted(glob.glob(os.path.join(directory, 'data.*')))
  if not paths:
    raise CorpusUnavailable(f'WordNet data files not found in {directory}')
  for path in paths:
    with open(path, encoding='utf-8') as f:
      for line in f:
        if line.startswith('  ') or ' | ' not in line:  # licence header
          continue
        fields, gloss = line.split(' | ', 1)
        fields = fields.split()
        word_count = int(fields[3], 16)
        words = [re.sub(r'\(.*\)$', '', w).replace('_', ' ') for w in fields[4:4 + 2 * word_count:2]]
        yield f'{os.path.basename(path)}:{fields[0]}', f'{", ".join(words)}: {gloss.strip()}'


def fortunes(directory: str = FORTUNES_DIR):
  """(file:index, entry) for every %-separated entry of the fortune files."""
  paths = sorted(p for p in glob.glob(os.path.join(directory, '*'))
                 if os.path.isfile(p) and not p.endswith(('.dat', '.u8')))
  if not paths:
    raise CorpusUnavailable(f'fortune files not found in {directory}')
  for path in paths:
    with open(path, encoding='utf-8', errors='replace') as f:
      entries = f.read().split('\n%\n')
    for index, entry in enumerate(entries):
      entry = re.sub(r'.\x08', '', entry).strip()  # drop overstriking (char, backspace)
      if entry:
        yield f'{os.path.basename(path)}:{index}', entry


def _records(corpus: str):
  if corpus == 'chitchat':
    return ({'id': i, 'turns': turns} for i, turns in chitchat_dialogs())
  if corpus == 'python_docs':
    return ({'id': name, 'text': text} for name, text in python_docs().items())
  reader = {'wordnet': wordnet_glosses, 'fortunes': fortunes}[corpus]
  return ({'id': i, 'text': text} for i, text in reader())


def export(corpus: str, directory: str) -> str:
  """Writes `<directory>/<corpus>.jsonl` once and returns its path.

  Raises CorpusUnavailable, naming the Debian package, if its files are missing.
  """
  path = os.path.join(directory, f'{corpus}.jsonl')
  if os.path.exists(path):
    return path
  os.makedirs(directory, exist_ok=True)
  try:
    records = list(_records(corpus))
  except CorpusUnavailable as error:
    raise CorpusUnavailable(f'{error}; install the Debian package {DEBIAN_PACKAGES[corpus]} '
                            f'(`make data` does)') from None
  temporary = f'{path}.tmp'
  with open(temporary, 'w', encoding='utf-8') as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + '\n')
  os.replace(temporary, path)  # never a half-written corpus
  return path
