"""Benchmark lines name their machine: read from /proc/cpuinfo, and the host
memory settings that change a CPU run's speed."""

import os
import pathlib
import platform
import subprocess
import sys

import pytest

from benchmarks import machine

ROOT = pathlib.Path(__file__).resolve().parent.parent

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16 avx512_vnni
"""


def test_the_cpu_is_described_from_cpuinfo():
  described = machine.describe_cpu(CPUINFO)
  assert described['model_name'] == 'AMD EPYC 9654 96-Core Processor'
  assert (described['family'], described['model'], described['logical_cores']) == ('25', '17', 2)
  assert described['flags'] == ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni']


def test_this_machine_is_described():
  described = machine.describe_cpu()
  assert described['model_name'] and described['logical_cores'] >= 1


def test_the_arithmetic_limit_counts_each_instruction_by_hand():
  """An FMA is 2 FLOPs per f32 lane; a bf16 dot-product-accumulate is 4 (two
  products and their two additions into each f32 lane)."""
  limit = machine.arithmetic_limit(seconds=0.2, threads=1)
  if 'unavailable' in limit:
    pytest.skip(limit['unavailable'])
  lanes = limit['vector_bits'] // 32
  assert limit['vector_bits'] in (256, 512) and limit['threads'] == 1
  assert limit['f32_flops_per_instruction'] == 2 * lanes and limit['f32_flops'] > 1e9
  if 'avx512_bf16' in machine.describe_cpu()['flags']:
    assert limit['bf16_flops_per_instruction'] == 4 * lanes and limit['bf16_flops'] > 1e9
  else:
    assert limit['bf16_flops'] is None


def test_host_memory_names_the_kernels_huge_page_mode(tmp_path, monkeypatch):
  mode_file = tmp_path / 'enabled'
  mode_file.write_text('always [madvise] never\n')
  monkeypatch.setenv('GLIBC_TUNABLES', 'glibc.malloc.hugetlb=1')
  assert machine.describe_host_memory(str(mode_file)) == {
      'glibc_tunables': 'glibc.malloc.hugetlb=1', 'transparent_hugepage': 'madvise'}
  assert 'GLIBC_TUNABLES' not in machine.peer_environment()  # the peer's faster setting
  monkeypatch.delenv('GLIBC_TUNABLES')
  assert machine.describe_host_memory(str(tmp_path / 'absent')) == {
      'glibc_tunables': '', 'transparent_hugepage': 'unknown'}


# A computation whose 64 MiB result is freed before the next call, as a train
# step's buffers are: prints its page faults per call after two warm-up calls.
FAULTS_PER_CALL = '''
import resource
import jax, jax.numpy as jnp
outer = jax.jit(lambda x, y: jnp.einsum('i,j->ij', x, y))  # [4096, 4096] float32
x = jnp.ones(4096)
for _ in range(2):
  jax.block_until_ready(outer(x, x))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  jax.block_until_ready(outer(x, x))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
'''


def _faults_per_call(environment) -> float:
  result = subprocess.run([sys.executable, '-c', FAULTS_PER_CALL], capture_output=True,
                          text=True, env=environment, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return float(result.stdout.split()[-1])


def test_the_makefiles_cpu_environment_cuts_page_faults():
  """XLA:CPU's 64 MiB buffer is mmap'd afresh each call: one fault per 4 KiB
  page, unless the Makefile's GLIBC_TUNABLES gets it transparent huge pages."""
  [line] = [line for line in (ROOT / 'Makefile').read_text().splitlines()
            if line.startswith('CPU_ENV :=')]
  settings = dict(word.split('=', 1) for word in line.split(':=', 1)[1].split())
  if machine.describe_host_memory()['transparent_hugepage'] not in ('always', 'madvise'):
    pytest.skip('the kernel gives no transparent huge pages')
  libc, version = platform.libc_ver()
  if libc != 'glibc' or tuple(int(part) for part in version.split('.')[:2]) < (2, 35):
    pytest.skip('glibc.malloc.hugetlb needs glibc 2.35 or later')
  plain = {key: value for key, value in os.environ.items() if key != 'GLIBC_TUNABLES'}
  pages = 4096 * 4096 * 4 // 4096
  assert _faults_per_call(plain) > pages / 2
  assert _faults_per_call({**plain, **settings}) < pages / 20
