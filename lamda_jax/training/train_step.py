"""One optimizer update, read top to bottom.

Loss is the weighted token cross-entropy of the whole global batch. With
microbatches, gradients of the summed loss are accumulated and divided once by
the batch's total weight, which is exactly the big-batch update. A step whose
loss or gradients are not finite is not applied; the host stops the run.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lamda_jax.config import TrainConfig
from lamda_jax.training import losses


def _loss_sums(params, batch, rng, *, model, cfg: TrainConfig, deterministic=False):
  heads = model.attribute_heads > 0  # discriminators are heads: read both outputs
  out = model.apply({'params': params}, batch['inputs'], batch['positions'],
                    batch['segment_ids'], deterministic=deterministic,
                    rngs={} if rng is None else {'dropout': rng},
                    readout='both' if heads else 'vocab')
  logits, head_logits = out if heads else (out, None)
  sums = losses.cross_entropy_sums(logits, batch['targets'], batch['loss_weights'],
                                   batch['task_ids'], len(cfg.tasks), cfg.z_loss, head_logits,
                                   losses.head_of_task(cfg.tasks))
  return sums['loss'] + sums['z_loss'], sums


def _split_microbatches(batch, count: int):
  """[batch, ...] -> [count, batch / count, ...], microbatch k = rows k, k + count, ...

  Strided so that every device keeps its own rows: no data moves between devices.
  """
  def split(x):
    x = x.reshape(x.shape[0] // count, count, *x.shape[1:]).swapaxes(0, 1)
    return nn.with_logical_constraint(x, (None, 'batch', 'length'))
  return jax.tree.map(split, batch)


def train_step(state, batch, *, model, optimizer, schedule, cfg: TrainConfig):
  grad_fn = jax.grad(functools.partial(_loss_sums, model=model, cfg=cfg), has_aux=True)
  rng = jax.random.fold_in(state.rng, state.step)

  if cfg.microbatches == 1:
    grads, sums = grad_fn(state.params, batch, rng)
  else:
    microbatches = _split_microbatches(batch, cfg.microbatches)

    def accumulate(totals, indexed_microbatch):
      index, microbatch = indexed_microbatch
      step_totals = grad_fn(state.params, microbatch, jax.random.fold_in(rng, index))
      return jax.tree.map(jnp.add, totals, step_totals), None

    first = jax.tree.map(lambda x: x[0], microbatches)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                         jax.eval_shape(grad_fn, state.params, first, rng))
    (grads, sums), _ = jax.lax.scan(
        accumulate, zeros, (jnp.arange(cfg.microbatches), microbatches))

  weight = jnp.maximum(sums['weight'], 1.0)
  grads = jax.tree.map(lambda g: g / weight, grads)
  loss = sums['loss'] / weight
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(sums['z_loss'])

  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  def keep_if_finite(new, old):
    return jnp.where(finite, new, old)

  new_state = state.replace(
      step=state.step + 1,
      params=jax.tree.map(keep_if_finite, params, state.params),
      opt_state=jax.tree.map(keep_if_finite, opt_state, state.opt_state))

  metrics = {'loss': loss, 'z_loss': sums['z_loss'] / weight, 'grad_norm': grad_norm,
             'learning_rate': schedule(state.step), 'finite': finite, 'tokens': sums['weight'],
             'task_loss': sums['task_loss'], 'task_correct': sums['task_correct'],
             'task_weight': sums['task_weight']}
  return new_state, metrics


def eval_step(params, batch, *, model, cfg: TrainConfig):
  """Summed loss statistics of one batch, without dropout."""
  return _loss_sums(params, batch, None, model=model, cfg=cfg, deterministic=True)[1]
