"""Benchmark lines name their machine: read from /proc/cpuinfo."""

import pytest

from benchmarks import machine

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
