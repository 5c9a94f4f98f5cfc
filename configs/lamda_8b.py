"""LaMDA 8B (Table 27): 16 layers, d_model 4096, 64 heads; 64 chips, 256K-token batches.

The paper does not give d_ff or head_dim for 8B; d_ff = 8 x d_model = 32768 and
head_dim = 128 (as in 137B) give 8.6B non-embedding parameters.

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
      name='lamda_8b',
      # 'dots_no_batch' needs 20.25 GiB per v3 core by XLA's ahead-of-time
      # compile on 128 devices (`--mode plan --config.plan.compile=True`); 'full'
      # needs 8.25 GiB of the 16.
      model=ModelConfig(num_layers=16, d_model=4096, num_heads=64, head_dim=128, d_ff=32768,
                        remat_policy='full'),
      mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
      # Each host opens only its streams' shards: 64 chips are 16 TPU v3 hosts,
      # and 64 streams also fit 32 or 64.
      data=DataConfig(sources=infiniset_sources('/data/infiniset'), streams=64),
      # Table 27's steps at 256K tokens per batch (TrainConfig's 128 x 2048);
      # the warm-up is T5's, our reading.
      train=TrainConfig(steps=521_000, warmup_steps=10_000),
      plan=PlanConfig(target='tpu_v3', chips=64, utilization=0.565),
  ).to_config_dict()
