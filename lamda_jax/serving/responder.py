"""A run's model answering dialogs by sample-and-rank (§3, §6.1).

For each dialog: the prompt `<context> RESPONSE` (the context truncated from
the left to fit) is run once; `num_candidates` responses are sampled from its
shared cache; each candidate is scored on the four attributes from the cache
decoding left behind (ranking under 'lamda', reported under 'pt');
`ranking.decide` picks the reply. Prompts are padded to one fixed width, so a
server compiles once per batch size. Runs on the run's mesh with the training
sharding rules.
"""

import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax import attributes
from lamda_jax.config import ConfigError, ExperimentConfig
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import formats
from lamda_jax.model import kv_cache
from lamda_jax.serving import decoding, ranking, runs, scoring


class Responder:
  """A run's model answering batches of dialogs: `run` when given one already
  opened, else `decode.from_run`, opened once."""

  def __init__(self, experiment: ExperimentConfig, run: runs.Run | None = None):
    self.config = cfg = experiment.decode
    if run is None:
      if not cfg.from_run:
        raise ConfigError('config.decode.from_run: the run whose model answers is required')
      run = runs.open_run(experiment, cfg.from_run, 'decode.from_run')
    self.run, self.tokenizer = run, run.tokenizer
    self.suffixes = scoring.rating_suffixes(self.tokenizer, attributes.NAMES)
    # The prompt, the response and an attribute suffix stay within the trained length.
    self.prompt_room = (experiment.train.seq_len - cfg.max_new_tokens -
                        max(map(len, self.suffixes)) - 1)
    if self.prompt_room < 2:
      raise ConfigError(f'config.decode.max_new_tokens: {cfg.max_new_tokens} new tokens leave no '
                        f'room for a prompt within train.seq_len {experiment.train.seq_len}')
    self.sampling = decoding.Sampling.from_config(cfg)
    self.rng = jax.random.key(cfg.seed)
    self.calls = 0

  def respond(self, histories, seeds=None) -> list[ranking.Decision]:
    """One Decision per dialog (a sequence of Turns, oldest first).

    With `seeds` (one int per dialog) a dialog's answer depends on its seed
    and the batch size alone, not on the call or the other dialogs; without,
    each call draws afresh, reproducibly from decode.seed."""
    prompt_ids = [formats.context_ids(self.tokenizer, list(turns), self.prompt_room)
                  for turns in histories]
    inputs, lengths = kv_cache.pad_prompts(prompt_ids, width=self.prompt_room + 1)
    if seeds is None:
      keys = jax.random.split(jax.random.fold_in(self.rng, self.calls), len(histories))
    else:
      keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(self.rng,
                                                             jnp.asarray(seeds, jnp.uint32))
    self.calls += 1
    with self.run.activated():
      out = decoding.generate(self.run.params, jnp.asarray(inputs), jnp.asarray(lengths), keys,
                              model=self.run.model, sampling=self.sampling)
      scores, _ = scoring.score_cached(
          self.run.params, out['cache'], out['next_positions'], self.tokenizer.piece_to_id('0'),
          self.tokenizer.piece_to_id('1'), model=self.run.model, suffixes=self.suffixes)
    scores = np.asarray(scores).reshape(len(histories), self.sampling.num_candidates, -1)
    tokens, token_counts, ended, log_likelihood = jax.device_get(
        (out['tokens'], out['lengths'], out['finished'], out['log_likelihood']))
    decisions = []
    for row in range(len(histories)):
      texts = [self.tokenizer.decode(tokens[row, c, :token_counts[row, c]].tolist())
               for c in range(self.sampling.num_candidates)]
      decisions.append(ranking.decide(
          texts, log_likelihood[row], token_counts[row] + ended[row], ended[row],
          scores[row], self.config.ranking, self.config.safety_threshold,
          self.config.fallback_reply))
    return decisions

  def reply_turn(self, text: str) -> Turn:
    return Turn(self.config.model_speaker, text)

  def user_turn(self, text: str) -> Turn:
    return Turn(self.config.user_speaker, text)
