"""Training several variants of one experiment on one prepared copy of its data.

The mixture is prepared once in `<workdir>/data/` (the data config must be the
same for every variant); each variant trains in `<workdir>/<name>/`, with its
exact config in `<name>/config.json`, reading the same batches in the same
order. `curves.png` draws every run's curves.
"""

import os

from experiments import outputs
from lamda_jax import config as config_lib
from lamda_jax.data import pipeline
from lamda_jax.training import loop, plotting


def train_variants(variants: dict[str, config_lib.ExperimentConfig], workdir: str) -> dict:
  """name -> the loop's summary of that variant's run (resumed if it exists)."""
  data_configs = {variant.data for variant in variants.values()}
  if len(data_configs) > 1:
    raise ValueError(f'variants {sorted(variants)} must share one data config to share data/')
  data_dir = os.path.join(workdir, 'data')
  summaries = {}
  for name, variant in variants.items():
    stage = os.path.join(workdir, name)
    outputs.write_config(stage, variant)
    summaries[name] = loop.run(variant, stage, pipeline.build(variant, data_dir))
  plotting.plot_runs([os.path.join(workdir, name) for name in variants],
                     os.path.join(workdir, 'curves.png'))
  return summaries
