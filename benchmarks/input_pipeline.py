"""Input pipeline: can it feed the step, a pod host, and a corpus 100x the default?

1. Builds the embedded mixture of `configs/tiny.py` in a fresh workdir (export,
   TFDS preparation, tokenizer training, tokenizing and packing into shards:
   the cold start) and again (the warm start: the shards are read, not made).
2. Rows/s of the Grain reader (`sampler.prefetched`) against what the `tiny`
   train step consumes in the same run, and against what one host of a TPU v4
   pod (4 chips) consumes at 56.5% MFU training the 2B and 137B configs,
   from the FLOPs per token `--mode describe` reports.
3. The same rows as a corpus of 1x, 10x and 100x the mixture's shards
   (hard links: the reader sees 10x or 100x the files and rows without the
   disk holding them), each read in a fresh process: the peak resident
   memory after opening and after 200 steps, and the seconds a resume takes
   to deliver its first batch. Both should not grow with the corpus.
4. Preparation throughput of the Beam pipeline on the DirectRunner: tokens per
   second per core, tokenizing and packing the chitchat source anew.

One JSON line per measurement.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
import jax

from benchmarks import machine, train_throughput
from lamda_jax import config as config_lib
from lamda_jax.configs import lamda_2b, lamda_137b, tiny
from lamda_jax.data import packed, pipeline
from lamda_jax.data.sampler import prefetched
from lamda_jax.model import stats

CPU = machine.describe_cpu()  # in every line: one CPU's numbers are not another's
V4_HOST_CHIPS, V4_PEAK, POD_MFU = 4, config_lib.TPU_TARGETS['tpu_v4'].peak_flops, 0.565

_PROBE = '''
import json, re, sys, time
from lamda_jax.data import packed
from lamda_jax.data.sampler import MixtureSampler, prefetched
def peak_mib():  # VmHWM starts afresh at exec, unlike ru_maxrss (kept from the parent)
  status = open('/proc/self/status').read()
  return int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) / 1024
folders = json.load(open(sys.argv[1]))
seq_len, batch = int(sys.argv[2]), int(sys.argv[3])
imported = peak_mib()
start = time.perf_counter()
sources = {name: packed.PackedRows(stems, seq_len) for name, stems in folders.items()}
sampler = MixtureSampler(sources, {name: 1.0 for name in sources}, batch, seed=0)
batches = prefetched(sampler, 10_000, 10_200)
next(batches)
first_batch = time.perf_counter() - start
opened = peak_mib()
for _ in batches:
  pass
print(json.dumps({'rows': sum(map(len, sources.values())), 'first_batch_seconds': first_batch,
                  'opened_mib': opened - imported, 'after_200_steps_mib': peak_mib() - imported}))
'''


def emit(record: dict):
  print(json.dumps({**record, 'cpu': CPU}), flush=True)


def corpus_of(built, scale: int, folder: str) -> dict[str, list[str]]:
  """Every train shard of the mixture `scale` times over, as hard links."""
  folders = {}
  for name, rows in built.train.sources.items():
    folders[name] = []
    for copy in range(scale):
      for stem in rows.stems:
        linked = os.path.join(folder, f'{name}-{copy:03d}-{os.path.basename(stem)}')
        for suffix in ('.array_record', '.json'):
          os.link(stem + suffix, linked + suffix)
        folders[name].append(linked)
  return folders


def main(argv):
  del argv
  experiment = config_lib.load(tiny.get_config())
  seq_len, batch = experiment.train.seq_len, experiment.train.batch_size
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    pipeline.build(experiment, workdir)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    built = pipeline.build(experiment, workdir)
    warm = time.perf_counter() - start
    emit({'benchmark': 'input_pipeline_build', 'config': experiment.name,
          'cold_start_seconds': cold, 'warm_start_seconds': warm,
          'train_rows': {name: len(r) for name, r in built.train.sources.items()},
          'packing_efficiency': built.packing_efficiency})

    steps = 400
    start = time.perf_counter()
    for _ in prefetched(built.train, 0, steps, experiment.data.read_threads,
                        experiment.data.read_ahead):
      pass
    reader_rows_per_second = steps * batch / (time.perf_counter() - start)
    step_rows_per_second = train_throughput.jax_throughput(experiment, steps=5) / seq_len
    pod = {}
    for module in (lamda_2b, lamda_137b):
      paper = config_lib.load(module.get_config())
      flops_per_token = stats.describe(paper)['flops_per_token']
      tokens = V4_HOST_CHIPS * V4_PEAK * POD_MFU / flops_per_token
      pod[paper.name] = {'rows_per_second': tokens / paper.train.seq_len,
                         'seq_len': paper.train.seq_len, 'flops_per_token': flops_per_token}
    emit({'benchmark': 'input_pipeline_vs_consumers', 'config': experiment.name,
          'reader_rows_per_second': reader_rows_per_second, 'seq_len': seq_len,
          'tiny_train_step_rows_per_second': step_rows_per_second,
          'headroom_over_tiny_step': reader_rows_per_second / step_rows_per_second,
          'tpu_v4_host_at_56.5pct_mfu': pod, 'devices': jax.device_count()})

    for scale in (1, 10, 100):
      folder = os.path.join(workdir, f'corpus-{scale}x')
      os.makedirs(folder)
      folders = corpus_of(built, scale, folder)
      with open(os.path.join(folder, 'shards.json'), 'w', encoding='utf-8') as f:
        json.dump(folders, f)
      probe = subprocess.run([sys.executable, '-c', _PROBE, f.name, str(seq_len),
                              str(batch)], capture_output=True, text=True, check=True,
                             env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
      emit({'benchmark': 'input_pipeline_memory', 'corpus_scale': scale,
            'shards': sum(map(len, folders.values())),
            **json.loads(probe.stdout.strip().splitlines()[-1])})

    source = built.train.sources['chitchat']
    jobs = pipeline.shard_jobs(pipeline.open_sources(experiment, workdir)['chitchat'], 'train',
                               pipeline.tokenizer_path(experiment, workdir), seq_len,
                               os.path.join(workdir, 'beam'), experiment.data.records_per_shard)
    cores = os.cpu_count() or 1
    start = time.perf_counter()
    pipeline.write_shards(jobs, 'DirectRunner', (f'--direct_num_workers={cores}',
                                                 '--direct_running_mode=multi_processing'))
    seconds = time.perf_counter() - start
    tokens = packed.PackedRows([job.stem for job in jobs], seq_len).tokens
    assert tokens == source.tokens  # the same rows as the in-process path
    emit({'benchmark': 'beam_prepare_direct_runner', 'source': 'chitchat',
          'shards': len(jobs), 'tokens': tokens, 'seconds': seconds, 'cores': cores,
          'tokens_per_second_per_core': tokens / seconds / cores})


if __name__ == '__main__':
  app.run(main)
