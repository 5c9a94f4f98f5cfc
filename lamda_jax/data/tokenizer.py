"""SentencePiece BPE tokenizer (§3: BPE, 32K vocabulary), trained by the project.

Ids follow T5: 0 pad, 1 end of sequence, 2 unknown; no beginning-of-sequence.
Byte fallback means no text is lost to <unk>; digits are split one by one.

The paper's control words are user-defined symbols, always one piece each
(after a separate '▁' word-boundary piece when a space precedes them):
the fine-tuning sentinel RESPONSE, the attribute names, the toolset's TS and
User, the research transcript's speakers LAMDA-BASE and LAMDA-RESEARCH (one
piece each rather than a dozen byte-sized ones in a small vocabulary), and the
ten digits, so a rating '0' or '1' is exactly one token.
Because they are matched anywhere, 'TSX' encodes as TS + X: lossless, just
not the segmentation a word would otherwise get.
"""

import os
from typing import Iterable

import sentencepiece as spm

from lamda_jax import attributes
from lamda_jax.data import dialog

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
# The fine-tuning sentinel (`<context> RESPONSE <response>`) and the toolset's
# speakers (`TS, <query>`, `User, <reply>`).
RESPONSE, TOOLSET, USER = 'RESPONSE', 'TS', 'User'
CONTROL_WORDS = (RESPONSE,) + attributes.NAMES + (TOOLSET, USER, dialog.BASE_SPEAKER,
                                                  dialog.RESEARCH_SPEAKER)
SPECIAL_SYMBOLS = CONTROL_WORDS + tuple('0123456789')


def train(texts: Iterable[str], vocab_size: int, model_path: str) -> spm.SentencePieceProcessor:
  """Trains a BPE model on the lines of `texts` and writes `model_path`."""
  os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
  lines = (line for text in texts for line in text.splitlines() if line.strip())
  spm.SentencePieceTrainer.train(
      sentence_iterator=lines, model_prefix=model_path.removesuffix('.model'),
      vocab_size=vocab_size, model_type='bpe', byte_fallback=True, split_digits=True,
      character_coverage=0.9995, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      normalization_rule_name='identity', remove_extra_whitespaces=False,
      allow_whitespace_only_pieces=True, user_defined_symbols=list(SPECIAL_SYMBOLS),
      num_threads=os.cpu_count() or 1,
      minloglevel=2)  # quiet: training statistics are noise in a run's log
  return load(model_path)


def load(model_path: str) -> spm.SentencePieceProcessor:
  if not os.path.exists(model_path):
    raise FileNotFoundError(f'No SentencePiece model at {model_path}')
  return spm.SentencePieceProcessor(model_file=model_path)


def load_or_train(model_path: str, texts: Iterable[str], vocab_size: int):
  """The run's tokenizer: trained once into the workdir, then always reloaded."""
  tokenizer = load(model_path) if os.path.exists(model_path) else train(texts, vocab_size,
                                                                        model_path)
  if tokenizer.vocab_size() > vocab_size:
    raise ValueError(f'{model_path} has {tokenizer.vocab_size()} pieces but '
                     f'config.model.vocab_size is {vocab_size}')
  return tokenizer
