"""LaMDA-Base -> LaMDA-Research with a run's model (§6.2, Figure 3).

LaMDA-Base answers by sample-and-rank (`serving.responder`): that reply is
the draft. LaMDA-Research is the same run prompted with the research format:
the transcript tokenized by `formats.research_pieces` (exactly as the research
task trained it), then `LAMDA-RESEARCH:`, from which the model writes one line
and stops at the newline that ends it. `research.run` applies the protocol's
rules; the line decoding keeps one KV cache per reply, so each research step
runs only what the transcript gained since the last one (the toolset's
results and the next speaker tag) and the line's own tokens.
"""

import collections
import dataclasses
import re

from lamda_jax.config import ConfigError, ExperimentConfig
from lamda_jax.data import dialog
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.data.dialog import Turn
from lamda_jax.finetune import formats
from lamda_jax.grounding import research, toolset
from lamda_jax.serving import continuation, decoding, ranking, responder


@dataclasses.dataclass(frozen=True)
class Grounded:
  """A reply through the loop: LaMDA-Base's sample-and-rank decision (the draft)
  and what LaMDA-Research made of it. Read like a Decision by chat, generate
  and serve."""
  draft: ranking.Decision
  research: research.Research
  tokens_run: int  # through the model by the research steps: their whole cost

  @property
  def reply(self) -> str:
    return self.research.reply

  @property
  def fallback(self) -> bool:
    return self.draft.fallback

  @property
  def candidates(self):
    return self.draft.candidates

  def transcript_text(self) -> str:
    return dialog.render(self.research.transcript)

  def to_json(self) -> dict:
    found = self.research
    return {**self.draft.to_json(), 'reply': found.reply, 'draft': self.draft.reply,
            'transcript': [dataclasses.asdict(turn) for turn in found.transcript],
            'calls': found.calls, 'citation': found.citation, 'events': found.events,
            'tokens_run': self.tokens_run}


# The protocol's own line starts: `TS, `, `TS: `, `User, `, a speaker tag.
_PROTOCOL = re.compile(rf'\b(?:{research.TOOLSET}|{tokenizer_lib.USER}|{research.BASE}|'
                       rf'{research.RESEARCH})\s*[,:]')


def draft_turn_text(reply: str) -> str:
  """LaMDA-Base's reply as the draft turn of a transcript. A turn is one line,
  so whitespace runs become single spaces; and a reply speaks for no one else,
  so it is cut before anything that reads as the protocol's own lines (`TS, `,
  `User, `, a speaker tag): a base model that has seen research transcripts
  can echo them, and its draft must not read as a query already made."""
  text = ' '.join(reply.split())
  cut = _PROTOCOL.search(text)
  return text[:cut.start()].rstrip() if cut else text


def line_prompt(tokenizer, transcript, forced_prefix: str) -> list[int]:
  """The tokens from which the model writes the next LAMDA-RESEARCH line: the
  transcript's research pieces, the speaker tag, and the forced start of the
  line (its trailing space left to the model, as the pieces tokenize it)."""
  pieces = formats.research_pieces(tokenizer, tuple(transcript) + (
      Turn(research.RESEARCH, forced_prefix.rstrip()),))
  return [token for ids, _ in pieces for token in ids]


class Researcher:
  """A run answering dialogs through the research loop: `respond(histories)`
  -> one Grounded per dialog. `tools` defaults to `experiment.toolset`, its
  index kept beside the run."""

  def __init__(self, experiment: ExperimentConfig, run=None, tools: toolset.Toolset = None):
    self.base = responder.Responder(experiment, run)
    self.run, self.tokenizer = self.base.run, self.base.tokenizer
    self.config = experiment.decode  # what chat reads of an answerer, as of a Responder
    self.research_config = cfg = experiment.research
    self.tools = tools or toolset.Toolset.from_config(experiment.toolset, self.run.directory)
    newline = self.tokenizer.encode('\n')
    if not newline or self.tokenizer.decode(newline[-1:]) != '\n':
      raise ConfigError('the run\'s tokenizer does not end a newline with a piece of its own; '
                        'the research loop cannot tell where a line ends')
    self.stop_ids = (newline[-1], self.tokenizer.eos_id())
    self.sampling = decoding.Sampling(1, cfg.max_line_tokens, experiment.decode.top_k,
                                      float(cfg.temperature), float(experiment.decode.top_p))
    self.window = experiment.train.seq_len
    self.config_seed, self.replies = experiment.decode.seed, 0
    self.events = collections.Counter()  # of the replies so far, for the logs and eval

  def user_turn(self, text: str) -> Turn:
    return self.base.user_turn(text)

  def reply_turn(self, text: str) -> Turn:
    return self.base.reply_turn(text)

  def respond(self, histories, seeds=None) -> list[Grounded]:
    """An empty dialog (a batch's padding) has nothing to research: its draft
    stands. `seeds` as Responder.respond's, for the draft and the research lines."""
    drafts = self.base.respond(histories, seeds)
    return [self.research(turns, draft, None if seeds is None else seeds[index]) if turns else
            Grounded(draft, research.Research(draft.reply, (), 0, '', {}), 0)
            for index, (turns, draft) in enumerate(zip(histories, drafts))]

  def research(self, context, draft: ranking.Decision, seed: int | None = None) -> Grounded:
    """The loop for one context, from LaMDA-Base's decision; its lines are
    sampled from `seed`, else from the next reply's own."""
    cfg = self.research_config
    if seed is None:
      seed, self.replies = self.config_seed + self.replies, self.replies + 1
    line_decoder = continuation.Continuation(self.run, self.sampling, self.stop_ids, self.window,
                                             seed=seed)

    def ask(transcript, forced_prefix):
      forced = self.tokenizer.encode(forced_prefix.rstrip()) if forced_prefix else []
      written = line_decoder.line(line_prompt(self.tokenizer, transcript, forced_prefix))
      if written and written[-1] in self.stop_ids:
        written = written[:-1]
      return self.tokenizer.decode(forced + written).strip()

    with self.run.activated():
      found = research.run(tuple(context), draft_turn_text(draft.reply), ask, self.tools, toolset.Conversation(),
                           cfg.max_steps, cfg.max_result_chars)
    events = collections.Counter(found.events)
    events['window_cut'] += line_decoder.window_cuts
    events['line_cut'] += line_decoder.line_cuts
    self.events.update(events)
    return Grounded(draft, dataclasses.replace(found, events=dict(+events)),
                    line_decoder.tokens_run)
