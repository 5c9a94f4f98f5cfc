"""LaMDA 2B (Table 27): 10 layers, d_model 2560, 40 heads; 64 chips, 256K-token batches.

The paper does not give d_ff or head_dim for 2B; d_ff = 8 x d_model = 20480 and
head_dim = 128 (as in 137B) give 2.1B non-embedding parameters.

The paper gives the steps, batch tokens and chips; the sequence length
(2048), Adafactor and its schedule are our reading (T5.1.1's).

Data: the paper's Infiniset shares over the lab's files under /data/infiniset.
"""

from lamda_jax.config import (
  DataConfig,
  ExperimentConfig,
  MeshConfig,
  ModelConfig,
  PlanConfig,
  TrainConfig,
  infiniset_sources,
)


def get_config():
  return ExperimentConfig(
      name='lamda_2b',
      model=ModelConfig(num_layers=10, d_model=2560, num_heads=40, head_dim=128, d_ff=20480,
                        remat_policy='dots_no_batch'),
      mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
      # Each host opens only its streams' shards: 64 chips are 16 TPU v3 hosts,
      # and 64 streams also fit 32 or 64.
      data=DataConfig(sources=infiniset_sources('/data/infiniset'), streams=64),
      # Table 27's steps at 256K tokens per batch (TrainConfig's 128 x 2048);
      # the warm-up is T5's, our reading.
      train=TrainConfig(steps=501_000, warmup_steps=10_000),
      plan=PlanConfig(target='tpu_v3', chips=64, utilization=0.565),
  ).to_config_dict()
