"""The paper's architecture against Llama 2's choices, one change at a time, on the
same data for the same steps.

  python -m experiments.architecture_ablations --config configs/tiny.py --workdir runs/ablations

Variants (ABLATIONS): the paper's model (T5 relative bias, gated-GELU,
multi-head attention); RoPE instead of the relative bias; SwiGLU and a plain
GELU feed-forward instead of gated-GELU; grouped-query attention (half the
key/value heads); and all of Llama 2's together. The mixture is prepared once
(`data/`) and every variant reads the same batches in the same order; each
trains in `<name>/`, with the exact config in `<name>/config.json`. `results.json` and `results.md` hold parameters, final
train and eval loss, tokens/s and the KV cache per token; `curves.png` plots
every run's curves. The discriminator readouts (rating token vs heads) have
their own experiment, experiments/discriminator_readouts.py.
"""

import dataclasses
import json
import os

from absl import app, flags
import jax.numpy as jnp
from ml_collections import config_flags

from experiments import outputs
from lamda_jax import config as config_lib
from lamda_jax import console
from lamda_jax.data import pipeline
from lamda_jax.model import stats
from lamda_jax.training import loop, plotting

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/ablations', 'Where every variant writes.')
_ONLY = flags.DEFINE_list('only', [], 'Run only these variants (default: all).')


def ablations(model: config_lib.ModelConfig) -> dict[str, dict]:
  """Variant name -> model fields changed from the config's own (the paper's) model."""
  grouped = {'num_kv_heads': max(model.num_heads // 2, 1)}
  return {
      'paper': {},
      'rope': {'position_encoding': 'rope'},
      'swiglu': {'activations': ('silu', 'linear')},
      'gelu_ffn': {'activations': ('gelu',)},
      'gqa': grouped,
      'llama2': {'position_encoding': 'rope', 'activations': ('silu', 'linear'), **grouped},
  }


def kv_cache_bytes_per_token(model: config_lib.ModelConfig) -> int:
  """Keys and values of one token in every layer: what decoding keeps per slot."""
  width = jnp.dtype(model.dtype).itemsize
  return 2 * model.num_layers * model.kv_heads * model.head_dim * width


def run(experiment: config_lib.ExperimentConfig, workdir: str, only=()) -> dict:
  outputs.write_config(workdir, experiment)
  data_dir = os.path.join(workdir, 'data')
  results = {}
  for name, changes in ablations(experiment.model).items():
    if only and name not in only:
      continue
    variant = dataclasses.replace(experiment, name=f'{experiment.name}_{name}',
                                  model=dataclasses.replace(experiment.model, **changes))
    stage = os.path.join(workdir, name)
    outputs.write_config(stage, variant)
    summary = loop.run(variant, stage, pipeline.build(variant, data_dir))
    described = stats.describe(variant)
    results[name] = {
        'changes': changes,
        'params_non_embedding': described['params_non_embedding'],
        'loss': summary['loss'],
        'eval_loss': summary['eval/loss'],
        'tokens_per_second': summary['tokens_per_second'],
        'kv_cache_bytes_per_token': kv_cache_bytes_per_token(variant.model),
    }
  plotting.plot_runs([os.path.join(workdir, name) for name in results],
                     os.path.join(workdir, 'curves.png'))
  outputs.write_results(workdir, results, markdown(results, experiment.train.steps))
  return results


def markdown(results: dict, steps: int) -> str:
  lines = [f'Same data, {steps} steps each; eval loss on the held-out split.', '',
           '| variant | change | non-embedding params | train loss | eval loss | tokens/s '
           '| KV cache bytes/token |', '|---|---|---|---|---|---|---|']
  for name, r in results.items():
    change = ', '.join(f'{k}={v}' for k, v in r['changes'].items()) or '(the paper\'s)'
    lines.append(f'| {name} | {change} | {r["params_non_embedding"]:,} | {r["loss"]:.3f} | '
                 f'{r["eval_loss"]:.3f} | {r["tokens_per_second"]:,.0f} | '
                 f'{r["kv_cache_bytes_per_token"]:,} |')
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  console.setup(_WORKDIR.value, verbose=False)
  experiment = config_lib.load(_CONFIG.value)
  print(json.dumps(run(experiment, _WORKDIR.value, _ONLY.value)))


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
