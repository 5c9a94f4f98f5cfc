"""What machine a benchmark line was measured on, so one CPU's result is never
read as another's: the CPU model, family, cores and the instruction sets that
decide XLA:CPU's speed; and the most its vector units can compute, measured
(`arithmetic_limit.c`), so a measured matmul peak is shown against the
possible."""

import functools
import json
import os
import shutil
import subprocess
import tempfile

# Instruction sets XLA:CPU's kernels use for the model's dots.
FLAGS_THAT_MATTER = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_tile',
                     'amx_bf16')


def describe_cpu(cpuinfo: str | None = None) -> dict:
  """Model name, family, model, logical cores and flags, from /proc/cpuinfo."""
  if cpuinfo is None:
    try:
      with open('/proc/cpuinfo', encoding='utf-8') as f:
        cpuinfo = f.read()
    except OSError:
      return {'model_name': 'unknown', 'logical_cores': os.cpu_count()}
  first = {}
  cores = 0
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(':')
    key, value = key.strip(), value.strip()
    if key == 'processor':
      cores += 1
    first.setdefault(key, value)
  flags = set(first.get('flags', '').split())
  described = {'model_name': first.get('model name', 'unknown'),
               'family': first.get('cpu family', ''), 'model': first.get('model', ''),
               'logical_cores': cores or os.cpu_count(),
               'flags': [flag for flag in FLAGS_THAT_MATTER if flag in flags]}
  return described


def describe_host_memory(thp_mode_path: str = '/sys/kernel/mm/transparent_hugepage/enabled'
                         ) -> dict:
  """What decides how fast XLA:CPU's buffers are faulted in each step: glibc's
  tunables (the Makefile's CPU_ENV asks for huge pages) and the kernel's
  transparent huge page mode (the bracketed one of 'always [madvise] never')."""
  try:
    with open(thp_mode_path, encoding='utf-8') as f:
      modes = f.read()
    mode = modes[modes.index('[') + 1:modes.index(']')]
  except (OSError, ValueError):
    mode = 'unknown'
  return {'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''), 'transparent_hugepage': mode}


def peer_environment() -> dict:
  """This process's environment without GLIBC_TUNABLES, for the peer: torch
  ran its `bench` steps 15-20% slower with huge pages asked for, so it runs
  with glibc's defaults, its faster setting (BENCHMARKS.md)."""
  return {key: value for key, value in os.environ.items() if key != 'GLIBC_TUNABLES'}


KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'arithmetic_limit.c')


@functools.lru_cache(maxsize=1)
def _compiled_kernel() -> str:
  """arithmetic_limit.c built for this CPU (-march=native), once per process."""
  compiler = shutil.which('gcc') or shutil.which('cc')
  if not compiler:
    raise RuntimeError('no C compiler (gcc or cc) on PATH')
  binary = os.path.join(tempfile.mkdtemp(prefix='arithmetic_limit'), 'arithmetic_limit')
  result = subprocess.run([compiler, '-O2', '-march=native', '-fopenmp', KERNEL, '-o', binary],
                          capture_output=True, text=True, check=False)
  if result.returncode:
    raise RuntimeError(f'{compiler} could not build {KERNEL}: {result.stderr.strip()[-500:]}')
  return binary


def arithmetic_limit(seconds: float = 2.0, threads: int | None = None) -> dict:
  """FLOP/s of every core doing nothing but vector f32 FMAs, and bf16
  dot-product-accumulates where the CPU has them (None otherwise): the
  arithmetic limit a matmul can approach but not pass. `unavailable` says why
  when it cannot be measured. With AMX (`amx_bf16`), bf16 matmuls may run on
  the tile unit, which this does not measure: `bf16_is_bound` is then False."""
  threads = threads or len(os.sched_getaffinity(0))
  try:
    binary = _compiled_kernel()
  except RuntimeError as error:
    return {'unavailable': str(error)}
  result = subprocess.run([binary, str(seconds)], capture_output=True, text=True, check=True,
                          env={**os.environ, 'OMP_NUM_THREADS': str(threads)})
  limit = json.loads(result.stdout.strip().splitlines()[-1])
  limit['bf16_is_bound'] = 'amx_bf16' not in describe_cpu()['flags']
  return limit
