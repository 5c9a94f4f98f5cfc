"""LaMDA 137B (Table 27): 64 layers, d_model 8192, d_ff 65536, 128 heads x 128.

137.4B non-embedding parameters; pre-trained on 1024 TPU-v3 chips with 2D
sharding (GSPMD). A v3 chip is two JAX devices (TensorCores), so here FSDP over
128 x tensor parallelism over 16 on 2048 devices: the 128-sequence batch splits
one sequence per FSDP shard (`--mode plan` checks it). The paper gives the
steps, batch tokens, chips and utilization; the sequence length (2048),
Adafactor and its schedule are our reading (T5.1.1's).

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
      name='lamda_137b',
      model=ModelConfig(num_layers=64, d_model=8192, num_heads=128, head_dim=128, d_ff=65536,
                        remat_policy='full'),
      mesh=MeshConfig(data=1, fsdp=-1, tensor=16),
      # Each host opens only its stream's shards: one sequence per stream, and
      # 1024 chips are 256 TPU v3 hosts, two to a stream.
      data=DataConfig(sources=infiniset_sources('/data/infiniset'), streams=128),
      # Table 27's steps at 256K tokens per batch (TrainConfig's 128 x 2048);
      # the warm-up is T5's, our reading.
      train=TrainConfig(steps=3_000_000, warmup_steps=10_000),
      plan=PlanConfig(target='tpu_v3', chips=1024, utilization=0.565,
                      total_flops=3.55e23),
  ).to_config_dict()
