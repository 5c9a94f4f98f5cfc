"""Token cross-entropy weighted per token, as sums so that microbatches add up.

Per-token loss weights come with the batch: pre-training weighs every token,
fine-tuning only the response or the rating token. Returning sums (not means)
lets gradient accumulation divide once by the whole batch's weight, giving the
same update as one big batch.
"""

import jax
import jax.numpy as jnp


def cross_entropy_sums(logits, targets, weights, task_ids, num_tasks: int, z_loss: float):
  """logits [batch, length, vocab] float32; the rest [batch, length].

  z_loss (PaLM) adds z_loss * log(Z)^2 per token, keeping the softmax
  normaliser near 1 for stability in low precision.
  """
  log_normalizer = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  token_loss = log_normalizer - target_logits
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  def per_task(x):
    return jax.ops.segment_sum((x * weights).ravel(), task_ids.ravel(), num_segments=num_tasks)

  return {
      'loss': jnp.sum(token_loss * weights),
      'z_loss': z_loss * jnp.sum(jnp.square(log_normalizer) * weights),
      'weight': jnp.sum(weights),
      'task_loss': per_task(token_loss),
      'task_correct': per_task(correct),
      'task_weight': per_task(jnp.ones_like(token_loss)),
  }
