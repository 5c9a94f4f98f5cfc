"""A run's model answering dialogs by sample-and-rank (§3, §6.1).

For each dialog: the prompt `<context> RESPONSE` (the context truncated from
the left to fit) is run once; `num_candidates` responses are sampled from its
shared cache; each candidate is scored on the four attributes from the cache
decoding left behind (ranking under 'lamda', reported under 'pt');
`ranking.decide` picks the reply. Prompts are padded to one fixed width, so a server compiles once per
batch size. Runs on the run's mesh with the training sharding rules.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lamda_jax.config import ConfigError, ExperimentConfig
from lamda_jax.data import pipeline
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import formats
from lamda_jax.model.decoder import Decoder
from lamda_jax.serving import decoding, ranking, scoring
from lamda_jax.training import loop, partitioning


class Responder:
  """Loads `decode.from_run` (or `run_dir`) once; `respond` answers batches of dialogs."""

  def __init__(self, experiment: ExperimentConfig, run_dir: str = ''):
    self.config = cfg = experiment.decode
    run_dir = run_dir or cfg.from_run
    if not run_dir:
      raise ConfigError('config.decode.from_run: the run whose model answers is required')
    self.tokenizer = pipeline.run_tokenizer(experiment, run_dir, 'decode.from_run')
    self.suffixes = scoring.rating_suffixes(self.tokenizer, formats.ATTRIBUTES)
    self.suffix_length = max(map(len, self.suffixes))
    # The prompt, the response and an attribute suffix stay within the trained length.
    self.prompt_room = (experiment.train.seq_len - cfg.max_new_tokens - self.suffix_length - 1)
    if self.prompt_room < 2 or self.suffix_length > decoding.SCORING_SLOTS:
      raise ConfigError(f'config.decode.max_new_tokens: {cfg.max_new_tokens} new tokens leave no '
                        f'room for a prompt within train.seq_len {experiment.train.seq_len}')
    self.mesh = partitioning.create_mesh(experiment)
    self.rules = experiment.logical_axis_rules
    self.model = Decoder(experiment.model)
    self.sampling = decoding.Sampling.from_config(cfg)
    self.params = loop.latest_parameters(experiment, run_dir, 'decode.from_run')
    self.rng = jax.random.key(cfg.seed)
    self.calls = 0

  def respond(self, histories) -> list[ranking.Decision]:
    """One Decision per dialog (a sequence of Turns, oldest first)."""
    prompt_ids = [formats.context_ids(self.tokenizer, list(turns), self.prompt_room)
                  for turns in histories]
    inputs, lengths = decoding.pad_prompts(prompt_ids)
    inputs = np.pad(inputs, ((0, 0), (0, self.prompt_room + 1 - inputs.shape[1])))
    rng = jax.random.fold_in(self.rng, self.calls)  # a fresh draw per call, reproducible
    self.calls += 1
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      out = decoding.generate(self.params, jnp.asarray(inputs), jnp.asarray(lengths), rng,
                              model=self.model, sampling=self.sampling)
      scores, _ = scoring.score_cached(
          self.params, out['cache'], out['next_positions'], self.tokenizer.piece_to_id('0'),
          self.tokenizer.piece_to_id('1'), model=self.model, suffixes=self.suffixes)
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
