"""The toolset's translator (§6.2): "house in French" -> ["maison"], from real
bilingual dictionaries that install offline.

Debian's FreeDict packages (`dict-freedict-eng-fra`, `-fra-eng`, ...: GPL)
are read directly, without dictd: a `.index` of headword, offset and length
(dictd's base64 numbers) and a dictzip'ed `.dict.dz`, which is gzip with a
table of independently compressed chunks, so one entry is read by
decompressing only its chunks. Nothing is loaded at start: a lookup scans the
memory-mapped index for its headword. A pair is added by installing (or
pointing `toolset.dictionary_dir` at) `freedict-<src>-<dst>.{index,dict.dz}`
and naming the language in LANGUAGES.
"""

import dataclasses
import functools
import gzip
import mmap
import os
import re
import struct
import zlib

from absl import logging

LANGUAGES = {'english': 'eng', 'french': 'fra', 'german': 'deu', 'spanish': 'spa',
             'italian': 'ita', 'portuguese': 'por', 'dutch': 'nld', 'swedish': 'swe'}
DEBIAN_DIR = '/usr/share/dictd'
MAX_TRANSLATIONS = 3  # of the chosen entry, most common first
_B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
_LANGUAGE = '|'.join(LANGUAGES)
_QUERIES = [re.compile(pattern) for pattern in (
    rf"^how do (?:you|i) say (?P<text>.+?) in (?P<language>{_LANGUAGE})$",
    rf"^translate (?P<text>.+?) (?:in)?to (?P<language>{_LANGUAGE})$",
    rf"^what(?:'s| is) (?P<text>.+?) in (?P<language>{_LANGUAGE})$",
    rf"^(?P<text>.+?) in (?P<language>{_LANGUAGE})$",
)]


def decode_number(text: str) -> int:
  """dictd's base64 numbers: 'kPS' -> 36050."""
  value = 0
  for character in text:
    value = value * 64 + _B64.index(character)
  return value


class DictzipFile:
  """Random access into a .dict.dz: only the chunks holding the bytes asked for
  are decompressed. A plain gzip file (no chunk table) is decompressed once."""

  def __init__(self, path: str):
    self.path = path
    with open(path, 'rb') as f:
      header = f.read(12)
      if header[:2] != b'\x1f\x8b':
        raise ValueError(f'{path}: not gzip')
      flags, extra = header[3], b''
      if flags & 4:
        extra = f.read(struct.unpack('<H', header[10:12])[0])
      self.chunk_length, self.chunk_offsets = 0, []
      at = 0
      while at + 4 <= len(extra):  # subfields: id (2 bytes), length, data
        length = struct.unpack('<H', extra[at + 2:at + 4])[0]
        if extra[at:at + 2] == b'RA':
          _, self.chunk_length, count = struct.unpack('<HHH', extra[at + 4:at + 10])
          self.chunk_offsets = list(struct.unpack(f'<{count}H', extra[at + 10:at + 10 + 2 * count]))
        at += 4 + length
      f.seek(10 + (2 + len(extra) if flags & 4 else 0))
      for flag in (8, 16):  # a file name, a comment: zero-terminated
        if flags & flag:
          while f.read(1) not in (b'\x00', b''):
            pass
      if flags & 2:
        f.read(2)
      start, sizes = f.tell(), self.chunk_offsets
      self.chunk_offsets = [start + sum(sizes[:i]) for i in range(len(sizes) + 1)]
    self._whole = None

  def read(self, offset: int, length: int) -> bytes:
    if not self.chunk_length:
      if self._whole is None:
        with gzip.open(self.path) as f:
          self._whole = f.read()
      return self._whole[offset:offset + length]
    first = offset // self.chunk_length
    last = min((offset + length - 1) // self.chunk_length, len(self.chunk_offsets) - 2)
    with open(self.path, 'rb') as f:
      f.seek(self.chunk_offsets[first])
      compressed = f.read(self.chunk_offsets[last + 1] - self.chunk_offsets[first])
    data, at = b'', 0
    for chunk in range(first, last + 1):
      size = self.chunk_offsets[chunk + 1] - self.chunk_offsets[chunk]
      data += zlib.decompressobj(-zlib.MAX_WBITS).decompress(compressed[at:at + size])
      at += size
    start = offset - first * self.chunk_length
    return data[start:start + length]


@dataclasses.dataclass(frozen=True)
class Entry:
  headword: str
  translations: tuple[str, ...]
  examples: int  # usage examples the entry gives: common senses have the most


def parse_entry(text: str) -> Entry:
  """A FreeDict entry: 'headword /pronunciation/ <tags>' then lines of
  comma-separated translations, usage examples ("..."), notes and synonyms."""
  lines = text.split('\n')
  headword = re.sub(r'\s*(/[^/]*/|<[^>]*>).*$', '', lines[0]).strip()
  translations, examples = [], 0
  for line in lines[1:]:
    line = line.strip()
    if line.startswith('"'):
      examples += 1
    if not line or line.startswith(('"', 'Note:', 'Synonym', 'see:')):
      continue
    line = re.sub(r'^\d+\.\s*|\[[^\]]*\]|<[^>]*>|\([^)]*\)', '', line)
    translations += [word.strip() for word in line.split(',') if word.strip()]
  return Entry(headword, tuple(dict.fromkeys(translations)), examples)


class Dictionary:
  """One FreeDict pair; entries are looked up in the memory-mapped index."""

  def __init__(self, index_path: str, dict_path: str):
    self.index_path, self.data = index_path, DictzipFile(dict_path)
    with open(index_path, 'rb') as f:
      self.index = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

  def entries(self, headword: str) -> list[Entry]:
    key, found, at = b'\n' + headword.lower().encode('utf-8') + b'\t', [], 0
    while (at := self.index.find(key, at)) >= 0:
      end = self.index.find(b'\n', at + 1)
      _, offset, length = self.index[at + 1:end].decode('utf-8').split('\t')[:3]
      found.append(parse_entry(self.data.read(decode_number(offset),
                                              decode_number(length)).decode('utf-8')))
      at = end
    return found


class Translator:
  """`translate(query) -> [translations]`, or [] for a query it cannot read or a word it lacks."""

  def __init__(self, dictionary_dir: str = DEBIAN_DIR):
    self.dictionary_dir = dictionary_dir
    self._warned = set()

  @functools.lru_cache(maxsize=16)  # noqa: B019 -- one translator per toolset, kept for its life
  def dictionary(self, source: str, target: str) -> Dictionary | None:
    stem = os.path.join(self.dictionary_dir, f'freedict-{source}-{target}')
    if not os.path.exists(f'{stem}.index') or not os.path.exists(f'{stem}.dict.dz'):
      return None
    return Dictionary(f'{stem}.index', f'{stem}.dict.dz')

  def __call__(self, query: str) -> list[str]:
    text = query.strip().lower().rstrip('?.! ')
    for pattern in _QUERIES:
      match = pattern.match(text)
      if match:
        break
    else:
      return []
    phrase = match['text'].strip().strip('\'"').strip()
    target = LANGUAGES[match['language']]
    sources = [code for code in LANGUAGES.values() if code != 'eng'] if target == 'eng' else [
        'eng']
    dictionaries = [d for d in (self.dictionary(s, target) for s in sources) if d]
    if not dictionaries and target not in self._warned:
      self._warned.add(target)
      logging.warning('No dictionary into %s in %s; Debian packages dict-freedict-%s-%s '
                      '(and the like) enable it.', match['language'], self.dictionary_dir,
                      sources[0], target)
    for dictionary in dictionaries:
      entries = dictionary.entries(phrase) if phrase else []
      entries = [entry for entry in entries if entry.translations]
      if entries:  # the most exemplified sense, then the dictionary's own order
        best = max(entries, key=lambda entry: entry.examples)
        return [', '.join(best.translations[:MAX_TRANSLATIONS])]
    return []
