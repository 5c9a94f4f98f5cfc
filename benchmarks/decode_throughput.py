"""Decoding speed of lamda_jax, side by side with the peer, in one run.

New tokens/s for 16 candidates x 64 new tokens after one 128-token prompt with
the `bench` model (prompt cached once, candidates sampled with top-k 40 in one
jitted while_loop), and the added cost of scoring all 16 candidates on the four
attributes from the decoding cache, as a fraction of the generation time. The
peer, HuggingFace `LlamaForCausalLM.generate` (KV cache, top-k 40) at the same
dimensions, runs in its own environment given by --peer_python.

  make bench      # creates .venv-bench with the peer, then runs this

On a GPU (JAX's default backend) the peer runs on CUDA too.
"""

import dataclasses
import json
import subprocess
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import machine
from lamda_jax import config as config_lib
from lamda_jax.configs import bench
from lamda_jax.serving import decoding, scoring
from lamda_jax.training import trainer as trainer_lib

CPU = machine.describe_cpu()  # in every line: one CPU's numbers are not another's
DEVICE = jax.devices()[0].device_kind

_PEER_PYTHON = flags.DEFINE_string('peer_python', '', 'Python with torch + transformers; '
                                   'empty skips the peer.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed generations per measurement.')
_WARMUP = flags.DEFINE_integer('warmup', 6, 'Untimed generations before them, for both systems: '
                               'the first compiles, and on a CPU the next few still run up to '
                               '30% slower.')
_PRECISIONS = flags.DEFINE_list('precisions', ['float32', 'bfloat16'], 'Compute dtypes.')
CANDIDATES, PROMPT, NEW_TOKENS = 16, 128, 64
SUFFIXES = ((5, 6, 7), (5, 8, 7), (5, 9, 7), (5, 10, 7))  # four 3-token attribute suffixes


def _timed(fn, repeats, warmup):
  for _ in range(warmup):
    jax.block_until_ready(fn())
  start = time.perf_counter()
  for _ in range(repeats):
    out = jax.block_until_ready(fn())
  return (time.perf_counter() - start) / repeats, out


def measure(experiment, repeats: int, warmup: int) -> dict:
  trainer = trainer_lib.set_up(experiment)
  model = trainer.model
  # Sampling runs to the end: with random weights EOS (1 in 32000) almost never comes.
  sampling = decoding.Sampling(CANDIDATES, NEW_TOKENS, top_k=40, temperature=1.0, top_p=1.0)
  prompt = np.random.default_rng(0).integers(3, experiment.model.vocab_size, (1, PROMPT),
                                             np.int32)
  with trainer.activated():
    params = decoding.inference_params(trainer.initial_state().params, experiment.model)
    generate_seconds, out = _timed(lambda: decoding.generate(
        params, jnp.asarray(prompt), jnp.asarray([PROMPT]), jax.random.key(0)[None], model=model,
        sampling=sampling), repeats, warmup)
    cache = out['cache']

    def score(cache):
      return scoring.score_cached(params, cache, out['next_positions'], 3, 4, model=model,
                                  suffixes=SUFFIXES)
    _, cache = jax.block_until_ready(score(cache))  # compile
    start = time.perf_counter()
    for _ in range(repeats):  # the cache comes back with its prefixes intact
      _, cache = jax.block_until_ready(score(cache))
    score_seconds = (time.perf_counter() - start) / repeats
  new_tokens = int(np.asarray(out['lengths']).sum() + np.asarray(out['finished']).sum())
  return {'new_tokens_per_second': new_tokens / generate_seconds,
          'new_tokens': new_tokens, 'generate_seconds': generate_seconds,
          'score_seconds': score_seconds, 'scoring_fraction': score_seconds / generate_seconds}


def main(argv):
  del argv
  experiment = config_lib.load(bench.get_config())
  cfg = experiment.model
  for precision in _PRECISIONS.value:
    run = dataclasses.replace(experiment, model=dataclasses.replace(cfg, dtype=precision))
    print(json.dumps({'system': f'lamda_jax (jax {jax.__version__})', 'cpu': CPU,
                      'host_memory': machine.describe_host_memory(),
                      'device': DEVICE, 'config': experiment.name,
                      'task': 'generate', 'precision': precision,
                      'warmup': _WARMUP.value, **measure(run, _REPEATS.value, _WARMUP.value)}),
          flush=True)
  if _PEER_PYTHON.value:
    subprocess.run([
        _PEER_PYTHON.value, 'benchmarks/peer_llama.py', '--task=generate',
        f'--name={experiment.name}', f'--vocab={cfg.vocab_size}', f'--d_model={cfg.d_model}',
        f'--d_ff={cfg.d_ff}', f'--layers={cfg.num_layers}', f'--heads={cfg.num_heads}',
        f'--head_dim={cfg.head_dim}', f'--seq_len={experiment.train.seq_len}',
        f'--batch={CANDIDATES}', f'--prompt={PROMPT}', f'--new_tokens={NEW_TOKENS}',
        f'--steps={_REPEATS.value}', f'--warmup={_WARMUP.value}', f'--precisions={",".join(_PRECISIONS.value)}',
        f'--device={"cuda" if jax.default_backend() == "gpu" else "cpu"}'],
        check=True, stdout=sys.stdout,
        env=machine.peer_environment())


if __name__ == '__main__':
  app.run(main)
