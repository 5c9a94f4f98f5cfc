"""LaMDA 8B (Table 27): 16 layers, d_model 4096, 64 heads; 64 chips, 256K-token batches.

The paper does not give d_ff or head_dim for 8B; d_ff = 8 x d_model = 32768 and
head_dim = 128 (as in 137B) give 8.6B non-embedding parameters.

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
      name='lamda_8b',
      model=ModelConfig(num_layers=16, d_model=4096, num_heads=64, head_dim=128, d_ff=32768,
                        remat_policy='dots_no_batch'),
      mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
      data=DataConfig(sources=infiniset_sources('/data/infiniset')),
  ).to_config_dict()
