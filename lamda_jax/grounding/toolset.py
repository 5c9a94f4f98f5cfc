"""The toolset, TS (§6.2, Figure 3): one query string in, a list of strings out.

Every tool is tried on the query and their outputs are concatenated in the
paper's order: calculator, translator, information retrieval; a tool that
cannot read the query adds nothing. What the toolset remembers of a
conversation (which queries were asked, so that asking again returns the
next-ranked snippet) lives in a `Conversation` the caller holds: the toolset
itself keeps no per-conversation state. No query makes it raise: a tool that
fails is logged and adds nothing.
"""

import collections
import dataclasses
import os
import sys

from absl import logging

from lamda_jax.config import ToolsetConfig
from lamda_jax.data import builders, corpora
from lamda_jax.grounding import calculator, retrieval, translator

TOOLS = ('calculator', 'translator', 'retrieval')  # the order outputs are concatenated in


@dataclasses.dataclass
class Conversation:
  """The toolset's memory of one conversation: how often each query was asked."""
  asked: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class Retrieval:
  """IR as a tool: the next `per_call` snippets for a query, as `<snippet> <url>`."""

  def __init__(self, index: retrieval.Index, per_call: int):
    self.index, self.per_call = index, per_call

  def __call__(self, query: str, conversation: Conversation) -> list[str]:
    key = ' '.join(query.lower().split())
    start = conversation.asked[key] * self.per_call
    conversation.asked[key] += 1
    found = self.index.search(query, start + self.per_call)
    return [snippet.as_result() for snippet in found[start:start + self.per_call]]


def open_collections(cfg: ToolsetConfig) -> list[str]:
  """The configured collections: files (globs expanded; none matching is an
  error naming the field) and the embedded ones whose packages are installed."""
  sources = []
  for pattern in cfg.collections:
    if not pattern.startswith('embedded:'):
      sources += builders.expand_paths('toolset.collections', [pattern])
    elif pattern == 'embedded:wordnet' and not os.path.isdir(corpora.WORDNET_DIR):
      logging.warning('Toolset collection %s left out: Debian package %s is not installed.',
                      pattern, corpora.DEBIAN_PACKAGES['wordnet'])
    else:
      sources.append(pattern)
  if not sources:
    raise FileNotFoundError('config.toolset.collections: no collection is available')
  return sources


class Toolset:

  def __init__(self, retriever: Retrieval, dictionary_dir: str, max_query_chars: int):
    self.dictionary_dir, self.index = dictionary_dir, retriever.index
    translate = translator.Translator(dictionary_dir)
    self.tools = {'calculator': lambda query, _: calculator.calculate(query),
                  'translator': lambda query, _: translate(query),
                  'retrieval': retriever}
    self.max_query_chars = max_query_chars

  @classmethod
  def from_config(cls, cfg: ToolsetConfig, workdir: str) -> 'Toolset':
    """Builds the retrieval index once (into `toolset.index_dir`) and opens it."""
    if cfg.dictionary_dir != translator.DEBIAN_DIR and not os.path.isdir(cfg.dictionary_dir):
      raise FileNotFoundError(f'config.toolset.dictionary_dir: no folder {cfg.dictionary_dir}')
    folder = retrieval.build_index(open_collections(cfg),
                                   cfg.index_dir or os.path.join(workdir, 'toolset_index'))
    return cls(Retrieval(retrieval.Index(folder), cfg.snippets_per_call), cfg.dictionary_dir,
               cfg.max_query_chars)

  def by_tool(self, query: str, conversation: Conversation) -> dict[str, list[str]]:
    """Each tool's output for `query`, in the paper's order."""
    if not isinstance(query, str) or len(query) > self.max_query_chars or not query.strip():
      return {name: [] for name in TOOLS}
    outputs = {}
    for name in TOOLS:
      try:
        outputs[name] = list(self.tools[name](query, conversation))
      except Exception:  # pylint: disable=broad-except  # one tool's failure must not take the others down
        logging.exception('Toolset: %s failed on %r', name, query[:80])
        outputs[name] = []
    return outputs

  def query(self, query: str, conversation: Conversation) -> list[str]:
    """The paper's contract: every tool's output, concatenated in order."""
    return [result for outputs in self.by_tool(query, conversation).values()
            for result in outputs]


class Conversations:
  """Conversations by id for a server, the least recently used forgotten past
  `capacity` so that clients cannot grow it without bound; id '' is a fresh
  conversation every time."""

  def __init__(self, toolset: Toolset, capacity: int = 1024):
    self.toolset, self.capacity = toolset, capacity
    self.by_id = collections.OrderedDict()

  def __call__(self, query: str, conversation_id: str = '') -> list[str]:
    if not conversation_id:
      return self.toolset.query(query, Conversation())
    conversation = self.by_id.pop(conversation_id, None) or Conversation()
    self.by_id[conversation_id] = conversation
    while len(self.by_id) > self.capacity:
      self.by_id.popitem(last=False)
    return self.toolset.query(query, conversation)


def repl(toolset: Toolset, lines=sys.stdin, out=sys.stdout) -> dict:
  """`--mode toolset`: each line is a query; prints what every tool returns and
  the concatenated output the model would see. /reset starts a new conversation."""
  conversation, queries = Conversation(), 0
  print('Toolset: one query per line; /reset starts a new conversation, /quit ends.', file=out,
        flush=True)
  for line in lines:
    query = line.strip()
    if query == '/quit':
      break
    if query == '/reset':
      conversation = Conversation()
      print('(new conversation)', file=out, flush=True)
      continue
    if not query:
      continue
    queries += 1
    outputs = toolset.by_tool(query, conversation)
    for name, results in outputs.items():
      print(f'  {name}: {results}', file=out)
    print(f'TS: {[r for results in outputs.values() for r in results]}', file=out, flush=True)
  return {'mode': 'toolset', 'queries': queries}
