"""The embedded default: a 4-layer model that trains in minutes on a 2-core CPU.

float32 compute because bfloat16 matmuls are emulated (slow) on most CPUs, and
unrolled layers because XLA:CPU runs them ~1.3x faster than a scan
(BENCHMARKS.md); the paper configs scan, which compiles once per layer stack.
"""

from lamda_jax.config import DataConfig, ExperimentConfig, FinetuneConfig, ModelConfig, TrainConfig


def get_config():
  return ExperimentConfig(
      name='tiny',
      model=ModelConfig(num_layers=4, d_model=128, num_heads=4, head_dim=32, d_ff=512,
                        vocab_size=2048, dtype='float32', scan_layers=False),
      train=TrainConfig(seq_len=128, batch_size=16, steps=300, warmup_steps=50, log_every=25,
                        eval_every=100, checkpoint_every=100),
      data=DataConfig(tokenizer_training_chars=3_000_000),
      finetune=FinetuneConfig(labels=('embedded:chitchat_weak',)),
  ).to_config_dict()
