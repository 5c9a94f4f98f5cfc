"""The paper's architecture against Llama 2's choices, one change at a time, on the
same data for the same steps.

  python -m experiments.architecture_ablations --config configs/tiny.py --workdir runs/ablations

Variants (`ablations`): the paper's model (T5 relative bias, gated-GELU,
multi-head attention); RoPE instead of the relative bias; SwiGLU and a plain
GELU feed-forward instead of gated-GELU; grouped-query attention (half the
key/value heads); and all of Llama 2's together, each trained by
experiments/sweep.py on one prepared copy of the data. `results.json` and
`results.md` hold parameters, final train and eval loss, tokens/s and the KV
cache per token; `curves.png` plots every run's curves. The discriminator readouts (rating token vs heads) have
their own experiment, experiments/discriminator_readouts.py.
"""

import dataclasses

from absl import flags
import jax.numpy as jnp

from experiments import outputs, sweep
from lamda_jax import config as config_lib
from lamda_jax.model import stats

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
  changed = {name: changes for name, changes in ablations(experiment.model).items()
             if not only or name in only}
  variants = {name: dataclasses.replace(experiment, name=f'{experiment.name}_{name}',
                                        model=dataclasses.replace(experiment.model, **changes))
              for name, changes in changed.items()}
  summaries = sweep.train_variants(variants, workdir)
  results = {name: {
      'changes': changed[name],
      'params_non_embedding': stats.describe(variant)['params_non_embedding'],
      'loss': summaries[name]['loss'],
      'eval_loss': summaries[name]['eval/loss'],
      'tokens_per_second': summaries[name]['tokens_per_second'],
      'kv_cache_bytes_per_token': kv_cache_bytes_per_token(variant.model),
  } for name, variant in variants.items()}
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


if __name__ == '__main__':
  outputs.main(lambda experiment, workdir: run(experiment, workdir, _ONLY.value),
               'runs/ablations')
