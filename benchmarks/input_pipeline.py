"""Input pipeline speed: can it starve the train step?

Builds the embedded mixture of `configs/tiny.py` in a fresh workdir (export,
TFDS preparation, tokenizer training: the cold start), builds it again (the
warm start: tokenizing and packing only), then times the step-indexed sampler
and compares its rows/s with what the train step consumes (measured in the
same run on the same machine). One JSON line per measurement.
"""

import json
import tempfile
import time

from absl import app
import jax
import numpy as np

from benchmarks import machine, train_throughput
from configs import tiny
from lamda_jax import config as config_lib
from lamda_jax.data import pipeline

CPU = machine.describe_cpu()  # in every line: one CPU's numbers are not another's


def main(argv):
  del argv
  experiment = config_lib.load(tiny.get_config())
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    pipeline.build(experiment, workdir)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    built = pipeline.build(experiment, workdir)
    warm = time.perf_counter() - start
  rows = {name: len(r['targets']) for name, r in built.train.sources.items()}
  print(json.dumps({'benchmark': 'input_pipeline_build', 'cpu': CPU, 'config': experiment.name,
                    'cold_start_seconds': cold, 'warm_start_seconds': warm,
                    'train_rows': rows, 'packing_efficiency': built.packing_efficiency}),
        flush=True)

  steps = 200
  start = time.perf_counter()
  for step in range(steps):
    batch = built.train.batch(step)
  sampler_seconds = (time.perf_counter() - start) / steps
  sampler_rows_per_second = experiment.train.batch_size / sampler_seconds
  step_tokens_per_second = train_throughput.jax_throughput(experiment, steps=5)
  consumed_rows_per_second = step_tokens_per_second / experiment.train.seq_len
  print(json.dumps({
      'benchmark': 'input_pipeline_vs_train_step', 'cpu': CPU, 'config': experiment.name,
      'sampler_rows_per_second': sampler_rows_per_second,
      'train_step_rows_per_second': consumed_rows_per_second,
      'headroom': sampler_rows_per_second / consumed_rows_per_second,
      'batch_fields': sorted(batch), 'devices': jax.device_count(),
      'batch_bytes': int(sum(np.asarray(v).nbytes for v in batch.values()))}), flush=True)


if __name__ == '__main__':
  app.run(main)
