"""What machine a benchmark line was measured on, so one CPU's result is never
read as another's: the CPU model, family, cores and the instruction sets that
decide XLA:CPU's speed."""

import os

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
