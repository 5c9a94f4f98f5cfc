"""The benchmark model shared with the PyTorch peer (benchmarks/): 8 layers,
d_model 512, 8 heads x 64, d_ff 2048, vocab 32000, sequences of 512, batch 8.

Unrolled layers: XLA:CPU runs them ~1.3x faster than a scan; attention in 4
causal blocks: steps 4-9% (f32) and 8-25% (bf16) faster than the whole
square, 2 or 8 blocks less so (BENCHMARKS.md)."""

from lamda_jax.config import ExperimentConfig, ModelConfig, TrainConfig


def get_config():
  return ExperimentConfig(
      name='bench',
      model=ModelConfig(num_layers=8, d_model=512, num_heads=8, head_dim=64, d_ff=2048,
                        dtype='float32', scan_layers=False, causal_blocks=4),
      train=TrainConfig(seq_len=512, batch_size=8),
  ).to_config_dict()
