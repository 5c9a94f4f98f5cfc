"""Training throughput and MFU of lamda_jax, side by side with the peer, one run.

For each config (tiny, bench): tokens/s of the real sharded train step
(`trainer.set_up`'s update, AdamW, global-norm clipping), and MFU against this
machine's matmul peak measured in the same run, and against its arithmetic
limit (`machine.arithmetic_limit`: what the vector units can do at all). The peer, HuggingFace
LlamaForCausalLM on PyTorch (same dimensions, AdamW), runs in its own
environment given by --peer_python. One JSON line per measurement.

  make bench      # creates .venv-bench with the peer, then runs this

On a GPU (JAX's default backend) the peer runs on CUDA too, and the peak is
measured on a larger matmul; e.g. the paper's 2B on one GPU (the peer is best
run on its own then, docs/training.md: JAX keeps the memory it took):
  python -m benchmarks.train_throughput --configs=lamda_2b --batch_size=4 \
    --precisions=bfloat16
"""

import dataclasses
import importlib
import json
import subprocess
import sys
import time

from absl import app, flags
import jax

from benchmarks import machine, synthetic
from lamda_jax import config as config_lib
from lamda_jax.model import stats
from lamda_jax.training import metrics
from lamda_jax.training import trainer as trainer_lib

CPU = machine.describe_cpu()  # in every line: one CPU's numbers are not another's
DEVICE = jax.devices()[0].device_kind

_PEER_PYTHON = flags.DEFINE_string('peer_python', '', 'Python with torch + transformers; '
                                   'empty skips the peer.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per measurement (after 2 warm-up '
                              'steps); 3 moved by 10-20% between runs.')
_CONFIGS = flags.DEFINE_list('configs', ['tiny', 'bench'], 'Configs in lamda_jax.configs.')
_PRECISIONS = flags.DEFINE_list('precisions', ['float32', 'bfloat16'], 'Compute dtypes.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 0, 'Sequences per step; 0 keeps the config\'s.')
_REMAT_POLICY = flags.DEFINE_string('remat_policy', '', 'Empty keeps the config\'s.')
_CAUSAL_BLOCKS = flags.DEFINE_integer('causal_blocks', 0, 'Query blocks of attention; 0 keeps '
                                      'the config\'s.')
# A 2048 matmul keeps a CPU's cores busy but is launch-bound on a GPU.
PEAK_MATMUL_SIZE = {'cpu': 2048}


def jax_throughput(experiment, steps: int) -> float:
  trainer = trainer_lib.set_up(experiment)
  with trainer.activated():
    state = trainer.initial_state()
    batch = jax.device_put(synthetic.full_batch(experiment), trainer.batch_sharding)
    for _ in range(2):  # compile, then one more untimed step
      state, step_metrics = trainer.update(state, batch)
    jax.block_until_ready(step_metrics)
    start = time.perf_counter()
    for _ in range(steps):
      state, step_metrics = trainer.update(state, batch)
    jax.block_until_ready(step_metrics)
  return steps * experiment.train.batch_size * experiment.train.seq_len / (
      time.perf_counter() - start)


def main(argv):
  del argv
  backend = jax.default_backend()
  peaks = {dtype: metrics.measure_peak_flops(dtype, PEAK_MATMUL_SIZE.get(backend, 8192))
           for dtype in _PRECISIONS.value}
  # The CPU's vector units bound a CPU run only.
  limit = machine.arithmetic_limit() if backend == 'cpu' else {'unavailable': backend}
  # What the vector units can do at all; None where unmeasured or, with AMX, not a bound.
  bounds = {'float32': limit.get('f32_flops'),
            'bfloat16': limit.get('bf16_flops') if limit.get('bf16_is_bound') else None}
  print(json.dumps({'system': f'jax_{jax.__version__}', 'cpu': CPU, 'device': DEVICE,
                    'host_memory': machine.describe_host_memory(),
                    'gemm_peak_flops': peaks, 'arithmetic_limit': limit,
                    'devices': jax.device_count()}), flush=True)
  for name in _CONFIGS.value:
    experiment = config_lib.load(
        importlib.import_module(f'lamda_jax.configs.{name}').get_config())
    # One data stream: the batch is synthetic, and a paper config's 64 streams
    # would not divide a one-device batch.
    experiment = dataclasses.replace(experiment, train=dataclasses.replace(
        experiment.train, optimizer='adamw', learning_rate=1e-3, warmup_steps=0,
        batch_size=_BATCH_SIZE.value or experiment.train.batch_size),
        data=dataclasses.replace(experiment.data, streams=1))
    cfg = experiment.model
    if _REMAT_POLICY.value:
      cfg = dataclasses.replace(cfg, remat_policy=_REMAT_POLICY.value)
    if _CAUSAL_BLOCKS.value:
      cfg = dataclasses.replace(cfg, causal_blocks=_CAUSAL_BLOCKS.value)
    flops = stats.flops_per_token(cfg, experiment.train.seq_len)['flops_per_token']
    for precision in _PRECISIONS.value:
      run = dataclasses.replace(experiment, model=dataclasses.replace(cfg, dtype=precision))
      tokens_per_second = jax_throughput(run, _STEPS.value)
      print(json.dumps({
          'system': 'lamda_jax', 'cpu': CPU, 'device': DEVICE, 'config': experiment.name,
          'precision': precision, 'remat_policy': cfg.remat_policy,
          'causal_blocks': cfg.causal_blocks,
          'tokens_per_second': tokens_per_second, 'flops_per_token': flops,
          'mfu_vs_measured_peak': flops * tokens_per_second / (peaks[precision] *
                                                               jax.device_count()),
          'mfu_vs_arithmetic_limit': (flops * tokens_per_second / bounds[precision]
                                      if bounds[precision] else None)}), flush=True)
    if _PEER_PYTHON.value:
      subprocess.run([
          _PEER_PYTHON.value, 'benchmarks/peer_llama.py', f'--name={experiment.name}',
          f'--vocab={cfg.vocab_size}', f'--d_model={cfg.d_model}', f'--d_ff={cfg.d_ff}',
          f'--layers={cfg.num_layers}', f'--heads={cfg.num_heads}', f'--head_dim={cfg.head_dim}',
          f'--seq_len={experiment.train.seq_len}', f'--batch={experiment.train.batch_size}',
          f'--steps={_STEPS.value}', f'--precisions={",".join(_PRECISIONS.value)}',
          f'--device={"cuda" if backend == "gpu" else "cpu"}'], check=True, stdout=sys.stdout,
          env=machine.peer_environment())


if __name__ == '__main__':
  app.run(main)
