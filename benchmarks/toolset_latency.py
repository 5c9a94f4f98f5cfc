"""Toolset latency against the model it serves, in one run.

IR: index build time, query latency (p50 / p99) and the resident memory a
loaded (memory-mapped) index adds, on the embedded collection and on a
synthetic collection of `--synthetic` snippets; calculator and translator
latency. The yardstick, measured in the same run: one decoding step of the
`bench` model (16 candidates, bf16), since a research step should cost the
model's time, not the toolset's. One JSON line per measurement.

  .venv/bin/python -m benchmarks.toolset_latency
"""

import dataclasses
import json
import os
import random
import tempfile
import time

from absl import app, flags
import numpy as np

from benchmarks import decode_throughput, machine
from lamda_jax import config as config_lib
from lamda_jax.configs import bench
from lamda_jax.data import corpora
from lamda_jax.grounding import calculator, retrieval, translator

CPU = machine.describe_cpu()  # in every line: one CPU's numbers are not another's

_SYNTHETIC = flags.DEFINE_integer('synthetic', 1_000_000, 'Snippets in the synthetic collection.')
_QUERIES = flags.DEFINE_integer('queries', 200, 'Timed queries per measurement.')


def _resident_mb() -> dict[str, float]:
  """Resident memory by kind: 'anon' (the process's own), 'file' (mapped file
  pages: page cache the kernel may evict)."""
  with open('/proc/self/status', encoding='utf-8') as f:
    fields = dict(line.split(':', 1) for line in f)
  return {kind: int(fields[f'Rss{kind.capitalize()}'].split()[0]) / 1024
          for kind in ('anon', 'file')}


def _latency_ms(function, queries) -> dict:
  seconds = []
  for query in queries:
    start = time.perf_counter()
    function(query)
    seconds.append(time.perf_counter() - start)
  return {'p50_ms': 1e3 * float(np.percentile(seconds, 50)),
          'p99_ms': 1e3 * float(np.percentile(seconds, 99))}


def _synthetic_collection(path: str, count: int, words: list[str]):
  rng = random.Random(0)
  with open(path, 'w', encoding='utf-8') as f:
    for i in range(count):
      text = ' '.join(rng.choices(words, k=rng.randrange(12, 30))) + '.'
      f.write(json.dumps({'id': f's{i}', 'url': f'urn:synthetic:{i}', 'title': f's{i}',
                          'text': text}) + '\n')


def _measure_index(name: str, sources, directory: str, queries) -> dict:
  start = time.perf_counter()
  folder = retrieval.build_index(sources, directory)
  build = time.perf_counter() - start
  before = _resident_mb()
  index = retrieval.Index(folder)
  loaded = _resident_mb()
  latency = _latency_ms(lambda q: index.search(q, 1), queries)
  after = _resident_mb()
  return {'benchmark': 'retrieval', 'collection': name, 'snippets': len(index),
          'build_seconds': build, 'index_bytes_on_disk': sum(
              os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)),
          **{f'resident_{kind}_mb_after_load': loaded[kind] - before[kind] for kind in before},
          **{f'resident_{kind}_mb_after_queries': after[kind] - before[kind] for kind in before},
          **latency}


def main(argv):
  del argv
  rng = random.Random(1)
  experiment = config_lib.load(bench.get_config())
  experiment = dataclasses.replace(experiment, model=dataclasses.replace(experiment.model,
                                                                         dtype='bfloat16'))
  decode = decode_throughput.measure(experiment, repeats=2)
  step_ms = 1e3 * decode['generate_seconds'] / decode_throughput.NEW_TOKENS
  print(json.dumps({'benchmark': 'decoding_step', 'cpu': CPU, 'config': 'bench', 'precision': 'bfloat16',
                    'candidates': decode_throughput.CANDIDATES, 'step_ms': step_ms}), flush=True)

  expressions = [f'{rng.randrange(1, 10**6)} {rng.choice("+-*/")} {rng.randrange(1, 10**4)}'
                 for _ in range(_QUERIES.value)]
  print(json.dumps({'benchmark': 'calculator', 'cpu': CPU, **_latency_ms(calculator.calculate, expressions)}),
        flush=True)
  if os.path.exists(os.path.join(translator.DEBIAN_DIR, 'freedict-eng-deu.index')):
    words = ['house', 'dog', 'cat', 'water', 'city', 'tree', 'book', 'good morning', 'xyzzy']
    phrases = [f'{rng.choice(words)} in {rng.choice(["French", "German", "Spanish"])}'
               for _ in range(_QUERIES.value)]
    print(json.dumps({'benchmark': 'translator', 'cpu': CPU, **_latency_ms(translator.Translator(), phrases)}),
          flush=True)

  with tempfile.TemporaryDirectory() as directory:
    vocabulary = [w for _, gloss in corpora.wordnet_glosses() for w in gloss.split()[:3]] if (
        os.path.isdir(corpora.WORDNET_DIR)) else [t for t in corpora.python_docs()]
    queries = [' '.join(rng.choices(vocabulary, k=3)) for _ in range(_QUERIES.value)]
    embedded = list(config_lib.ToolsetConfig().collections)
    if not os.path.isdir(corpora.WORDNET_DIR):
      embedded.remove('embedded:wordnet')
    print(json.dumps(_measure_index('embedded', embedded, directory, queries)), flush=True)
    path = os.path.join(directory, 'synthetic.jsonl')
    _synthetic_collection(path, _SYNTHETIC.value, sorted(set(vocabulary))[:50_000])
    print(json.dumps(_measure_index('synthetic', [path], directory, queries)), flush=True)


if __name__ == '__main__':
  app.run(main)
