"""The embedded default: a 4-layer model that trains in minutes on a 2-core CPU.

float32 compute because bfloat16 matmuls are emulated (slow) on most CPUs.
"""

from lamda_jax.config import ExperimentConfig, ModelConfig, TrainConfig


def get_config():
  return ExperimentConfig(
      name='tiny',
      model=ModelConfig(num_layers=4, d_model=128, num_heads=4, head_dim=32, d_ff=512,
                        vocab_size=2048, dtype='float32'),
      train=TrainConfig(seq_len=128, batch_size=16),
  ).to_config_dict()
