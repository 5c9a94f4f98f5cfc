"""The toolset's information retrieval (§6.2): BM25 (bm25s) over a collection
of short snippets, each with the URL it cites.

A collection is JSONL, one `{"id", "url", "title", "text"}` per line, so a lab
indexes its own Wikipedia dump the same way. The embedded default is built
from real offline text: WordNet glosses (Debian `wordnet-base`; "Paris, City
of Light, ...: the capital and largest city of France") and Python's reference
documentation, cut into snippets of a sentence or two.

`build_index` writes, once per collection (a fingerprint of its files names
the index): bm25s's sparse matrices, the snippets as JSONL and their byte
offsets. `Index.open` memory-maps all three, so a collection of millions of
snippets is searched without being read into memory.
"""

import dataclasses
import hashlib
import json
import os
import re

import numpy as np

from lamda_jax.config import EMBEDDED_COLLECTIONS
from lamda_jax.data import corpora

MAX_SNIPPET_CHARS = 300
WORDNET_URL = 'http://wordnetweb.princeton.edu/perl/webwn?s={}'
PYTHON_DOCS_URL = 'https://docs.python.org/3/search.html?q={}'
_SENTENCE_END = re.compile(r'(?<=[.!?;])\s+')


@dataclasses.dataclass(frozen=True)
class Snippet:
  id: str
  url: str
  title: str
  text: str

  def as_result(self) -> str:
    """How the toolset returns it, and the model sees and cites it."""
    return f'{self.text} {self.url}'


def shorten(text: str, limit: int = MAX_SNIPPET_CHARS) -> str:
  """The first sentences of `text` that fit in `limit` characters (at least one, cut if it must)."""
  text = ' '.join(text.split())
  kept = ''
  for sentence in _SENTENCE_END.split(text):
    if kept and len(kept) + 1 + len(sentence) > limit:
      break
    kept = f'{kept} {sentence}'.strip()
  return kept if len(kept) <= limit else kept[:limit - 3].rsplit(' ', 1)[0] + '...'


def embedded_snippets(name: str):
  """Snippets of an embedded corpus; CorpusUnavailable when its package is absent."""
  if name == 'wordnet':
    for synset, gloss in corpora.wordnet_glosses():
      words, definition = gloss.split(': ', 1)
      title = words.split(', ')[0]
      yield Snippet(f'wordnet:{synset}', WORDNET_URL.format(title.replace(' ', '+')), title,
                    shorten(f'{words}: {definition}'))
  elif name == 'python_docs':
    for topic, text in corpora.python_docs().items():
      paragraphs = [p for p in re.split(r'\n\s*\n', text)
                    if len(p.split()) > 5 and '::=' not in p]  # prose, not grammar rules
      for number, paragraph in enumerate(paragraphs[:4]):  # a topic's opening paragraphs
        yield Snippet(f'python_docs:{topic}:{number}', PYTHON_DOCS_URL.format(topic), topic,
                      shorten(paragraph))
  else:
    raise ValueError(f'unknown embedded collection {name!r}; expected one of '
                     f'{EMBEDDED_COLLECTIONS}')


def read_collection(path: str):
  """Snippets of a collection file; a bad line raises ValueError naming file:line and field."""
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        missing = [k for k in ('id', 'url', 'text') if not isinstance(record.get(k), str)]
        if missing:
          raise ValueError(f'"{missing[0]}": needs a string')
      except ValueError as error:  # json.JSONDecodeError included
        raise ValueError(f'{path}:{number}: {error}') from None
      yield Snippet(record['id'], record['url'], str(record.get('title', '')),
                    shorten(record['text']))


def _bm25s():
  """bm25s, imported on first use: importing it runs a JAX computation (its
  top-k probe), which must not initialise the XLA backend before
  `jax.distributed.initialize` in a multi-host run."""
  import bm25s  # pylint: disable=import-outside-toplevel
  return bm25s


def _tokenize(texts):
  return _bm25s().tokenize(texts, stopwords='en', return_ids=False, show_progress=False)


def collection_key(sources) -> str:
  """Names an index by what it was built from: embedded names and files (path, size, mtime)."""
  digest = hashlib.sha256(str(MAX_SNIPPET_CHARS).encode())
  for source in sorted(sources):
    digest.update(source.encode())
    if not source.startswith('embedded:'):
      stat = os.stat(source)
      digest.update(f':{stat.st_size}:{stat.st_mtime_ns}'.encode())
  return digest.hexdigest()[:12]


def build_index(sources, directory: str) -> str:
  """Indexes the snippets of `sources` (files, or `embedded:<name>`) into
  `directory/<key>` once, and returns that folder."""
  folder = os.path.join(directory, collection_key(sources))
  if os.path.exists(os.path.join(folder, 'done')):
    return folder
  os.makedirs(folder, exist_ok=True)
  offsets, texts = [], []
  with open(os.path.join(folder, 'snippets.jsonl'), 'wb') as out:
    for source in sources:
      snippets = (embedded_snippets(source.removeprefix('embedded:'))
                  if source.startswith('embedded:') else read_collection(source))
      for snippet in snippets:
        offsets.append(out.tell())
        out.write(json.dumps(dataclasses.asdict(snippet), ensure_ascii=False).encode() + b'\n')
        texts.append(f'{snippet.title} {snippet.text}')
  if not texts:
    raise ValueError(f'the collection {list(sources)} holds no snippet')
  np.save(os.path.join(folder, 'offsets.npy'), np.asarray(offsets, np.int64))
  retriever = _bm25s().BM25()
  retriever.index(_tokenize(texts), show_progress=False)
  retriever.save(folder, show_progress=False)
  open(os.path.join(folder, 'done'), 'w', encoding='utf-8').close()  # the index is complete
  return folder


class Index:
  """A built index, memory-mapped: `search(query, k)` -> the k best snippets, best first."""

  def __init__(self, folder: str):
    self.retriever = _bm25s().BM25.load(folder, mmap=True, show_progress=False)
    self.offsets = np.load(os.path.join(folder, 'offsets.npy'), mmap_mode='r')
    self.snippets = open(os.path.join(folder, 'snippets.jsonl'), 'rb')  # held for the index's life

  def __len__(self) -> int:
    return len(self.offsets)

  def snippet(self, row: int) -> Snippet:
    self.snippets.seek(int(self.offsets[row]))
    return Snippet(**json.loads(self.snippets.readline()))

  def search(self, query: str, k: int) -> list[Snippet]:
    tokens = _tokenize([query])
    if not tokens[0]:
      return []
    rows, scores = self.retriever.retrieve(tokens, k=min(k, len(self)), show_progress=False,
                                           n_threads=1, backend_selection='numpy')
    return [self.snippet(row) for row, score in zip(rows[0], scores[0]) if score > 0]
