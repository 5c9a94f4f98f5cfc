"""Optimizers and learning-rate schedules (optax) from the train config."""

import jax
import jax.numpy as jnp
import optax

from lamda_jax.config import TrainConfig


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
  """Linear warmup to the peak, then cosine decay, inverse square root, flat, or
  warmup-stable-decay (Hägele et al. 2024): flat, then linear decay over the
  last `decay_steps`. A wsd run equals the constant run until its decay
  starts, so cooling down can branch from any checkpoint of a constant run."""
  peak, warmup = cfg.learning_rate, cfg.warmup_steps
  if cfg.schedule == 'cosine':
    decay = optax.cosine_decay_schedule(peak, max(cfg.steps - warmup, 1),
                                        alpha=cfg.final_learning_rate_fraction)
  elif cfg.schedule == 'rsqrt':  # T5: peak * sqrt(warmup / step) once past warmup
    def decay(step):
      return peak * jax.lax.rsqrt(1.0 + step / max(warmup, 1))
  elif cfg.schedule == 'wsd':
    stable = cfg.steps - warmup - cfg.decay_steps
    decay = optax.join_schedules([
        optax.constant_schedule(peak),
        optax.linear_schedule(peak, peak * cfg.final_learning_rate_fraction, cfg.decay_steps),
    ], [stable])
  else:
    decay = optax.constant_schedule(peak)
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(cfg)
  if cfg.optimizer == 'adafactor':  # T5's: factored second moments, relative step size
    optimizer = optax.adafactor(schedule, weight_decay_rate=cfg.weight_decay or None)
  else:
    def decay_matrices_only(params):
      return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)

    optimizer = optax.adamw(schedule, b1=cfg.adam_b1, b2=cfg.adam_b2,
                            weight_decay=cfg.weight_decay, mask=decay_matrices_only)
  if cfg.grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), optimizer)
  return optimizer
