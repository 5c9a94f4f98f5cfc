"""Train and eval data for the train loop: tokenized, packed, step-indexed.

Until the pre-training mixture lands, the source is Python's bundled reference
documentation (real English prose about code); one topic in ten is held out
for evaluation, split by document so no text is in both.
"""

import dataclasses
import os

import jax
from jax.experimental import multihost_utils

from lamda_jax import corpora
from lamda_jax import packing
from lamda_jax import tokenizer as tokenizer_lib
from lamda_jax.config import ExperimentConfig
from lamda_jax.sampler import StepSampler

EVAL_EVERY_NTH_DOCUMENT = 10


@dataclasses.dataclass
class Datasets:
  train: StepSampler
  eval: StepSampler
  packing_efficiency: float


def document_examples(texts, tokenizer, seq_len: int):
  """Each document, ended by EOS, cut into seq_len pieces; loss on every token."""
  for text in texts:
    tokens = tokenizer.encode(text) + [tokenizer_lib.EOS_ID]
    for start in range(0, len(tokens), seq_len):
      piece = tuple(tokens[start:start + seq_len])
      yield packing.Example(piece, (1.0,) * len(piece))


def split_documents() -> tuple[list[str], list[str]]:
  """(train, eval) documents; eval is every tenth topic, never seen in training."""
  docs = list(corpora.python_docs().values())
  train_docs = [d for i, d in enumerate(docs) if i % EVAL_EVERY_NTH_DOCUMENT]
  return train_docs, docs[::EVAL_EVERY_NTH_DOCUMENT]


def tokenizer_for(experiment: ExperimentConfig, workdir: str):
  """The run's tokenizer, trained on the train split only, once per workdir."""
  path, train_docs = os.path.join(workdir, 'tokenizer.model'), split_documents()[0]
  if jax.process_count() > 1:  # process 0 trains it; the others wait, then load it
    if jax.process_index() == 0:
      tokenizer_lib.load_or_train(path, train_docs, experiment.model.vocab_size)
    multihost_utils.sync_global_devices('tokenizer ready')
  return tokenizer_lib.load_or_train(path, train_docs, experiment.model.vocab_size)


def build(experiment: ExperimentConfig, workdir: str) -> Datasets:
  train_docs, eval_docs = split_documents()
  tokenizer = tokenizer_for(experiment, workdir)
  seq_len, batch = experiment.train.seq_len, experiment.train.batch_size
  train_rows = packing.pack(document_examples(train_docs, tokenizer, seq_len), seq_len)
  eval_rows = packing.pack(document_examples(eval_docs, tokenizer, seq_len), seq_len)
  hosts = dict(process_index=jax.process_index(), process_count=jax.process_count())
  return Datasets(
      train=StepSampler(train_rows, batch, experiment.train.seed, **hosts),
      eval=StepSampler(eval_rows, batch, experiment.train.seed + 1, **hosts),
      packing_efficiency=packing.efficiency(train_rows))
