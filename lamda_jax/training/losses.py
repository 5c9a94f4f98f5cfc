"""Token cross-entropy weighted per token, as sums so that microbatches add up.

Per-token loss weights come with the batch: pre-training weighs every token,
fine-tuning only the response or the rating token. Returning sums (not means)
lets gradient accumulation divide once by the whole batch's weight, giving the
same update as one big batch.
"""

import jax
import jax.numpy as jnp
import optax

from lamda_jax import attributes


def head_of_task(tasks) -> tuple[int, ...]:
  """Per task name, the discriminator head it trains (its attribute's index in
  attributes.NAMES, as decoder.for_experiment orders the heads), or -1."""
  return tuple(attributes.NAMES.index(task) if task in attributes.BY_NAME else -1
               for task in tasks)


def cross_entropy_sums(logits, targets, weights, task_ids, num_tasks: int, z_loss: float,
                       head_logits=None, head_of_task=()):
  """logits [batch, length, vocab] float32; the rest [batch, length].

  z_loss (PaLM) adds z_loss * log(Z)^2 per token, keeping the softmax
  normaliser near 1 for stability in low precision.

  With `head_logits` [batch, length, heads] (discriminator heads), tokens of a
  task that `head_of_task` maps to a head take that head's logistic loss
  instead, their target being the label itself (formats.discriminator_example),
  and add no z-loss.
  """
  log_normalizer = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  token_loss = log_normalizer - target_logits
  # Correct when no logit exceeds the target's (a tie at the top counts): one
  # max over the vocabulary, where argmax's (value, index) reduction took 3.5%
  # of a `bench` step on XLA:CPU (BENCHMARKS.md).
  correct = (target_logits >= jnp.max(logits, axis=-1)).astype(jnp.float32)
  z_weights = weights
  if head_logits is not None:
    head = jnp.asarray(head_of_task, jnp.int32)[task_ids]  # [batch, length], -1: no head
    logit = jnp.take_along_axis(head_logits, jnp.maximum(head, 0)[..., None], axis=-1)[..., 0]
    label = (targets == 1).astype(jnp.float32)
    is_head = head >= 0
    token_loss = jnp.where(is_head, optax.sigmoid_binary_cross_entropy(logit, label), token_loss)
    correct = jnp.where(is_head, ((logit > 0) == (label > 0)).astype(jnp.float32), correct)
    z_weights = jnp.where(is_head, 0.0, weights)
  def per_task(x):
    return jax.ops.segment_sum((x * weights).ravel(), task_ids.ravel(), num_segments=num_tasks)

  return {
      'loss': jnp.sum(token_loss * weights),
      'z_loss': z_loss * jnp.sum(jnp.square(log_normalizer) * z_weights),
      'weight': jnp.sum(weights),
      'task_loss': per_task(token_loss),
      'task_correct': per_task(correct),
      'task_weight': per_task(jnp.ones_like(token_loss)),
  }
