"""LaMDA 2B (Table 27): 10 layers, d_model 2560, 40 heads; 64 chips, 256K-token batches.

The paper does not give d_ff or head_dim for 2B; d_ff = 8 x d_model = 20480 and
head_dim = 128 (as in 137B) give 2.1B non-embedding parameters.

Data: the paper's Infiniset shares over the lab's files under /data/infiniset.
"""

from lamda_jax.config import (
  DataConfig,
  ExperimentConfig,
  MeshConfig,
  ModelConfig,
  infiniset_sources,
)


def get_config():
  return ExperimentConfig(
      name='lamda_2b',
      model=ModelConfig(num_layers=10, d_model=2560, num_heads=40, head_dim=128, d_ff=20480,
                        remat_policy='dots_no_batch'),
      mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
      data=DataConfig(sources=infiniset_sources('/data/infiniset')),
  ).to_config_dict()
