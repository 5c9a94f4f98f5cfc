"""Ablation: the tiny model with SwiGLU (Llama's FFN) instead of gated-GELU."""

from lamda_jax.configs import tiny


def get_config():
  config = tiny.get_config()
  config.name = 'tiny_swiglu'
  config.model.activations = ('silu', 'linear')
  return config
