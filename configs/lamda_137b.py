"""LaMDA 137B (Table 27): 64 layers, d_model 8192, d_ff 65536, 128 heads x 128.

137.4B non-embedding parameters; pre-trained on 1024 TPU-v3 chips with 2D
sharding (GSPMD), here FSDP over 128 x tensor parallelism over 8.

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
      name='lamda_137b',
      model=ModelConfig(num_layers=64, d_model=8192, num_heads=128, head_dim=128, d_ff=65536,
                        remat_policy='full'),
      mesh=MeshConfig(data=1, fsdp=-1, tensor=8),
      data=DataConfig(sources=infiniset_sources('/data/infiniset')),
  ).to_config_dict()
