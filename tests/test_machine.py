"""Benchmark lines name their machine: read from /proc/cpuinfo."""

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
