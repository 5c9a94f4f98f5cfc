"""Text to logits on real tokens: the tokenizer and an untrained forward pass."""

import json
import math
import os
import subprocess
import sys

from lamda_jax import config as config_lib
from lamda_jax.data import corpora
from lamda_jax.data import tokenizer as tokenizer_lib
from lamda_jax.training import forward_check
from tests.configs import tiny_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tokenizer_round_trips_held_out_text_without_unknowns(tmp_path):
  docs = corpora.python_docs()
  held_out = docs.pop('with')
  sp = tokenizer_lib.train(list(docs.values())[:20], 600, str(tmp_path / 'sp.model'))
  assert sp.vocab_size() == 600
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  for text in (held_out, 'naïve café 東京 🙂', '  two  spaces\tand tab', '', 'x = 12345'):
    ids = sp.encode(text)
    assert tokenizer_lib.UNK_ID not in ids  # byte fallback: nothing lost to <unk>
    assert sp.decode(ids) == text
  assert [sp.id_to_piece(i) for i in sp.encode('12345')][-5:] == ['1', '2', '3', '4', '5']


def test_control_words_and_ratings_are_single_pieces(tmp_path):
  sp = tokenizer_lib.train(list(corpora.python_docs().values())[:20], 600,
                           str(tmp_path / 'sp.model'))
  pieces = sp.encode("What's up? RESPONSE not much. SENSIBLE 1", out_type=str)
  assert pieces[-4:] == ['\u2581', 'SENSIBLE', '\u2581', '1']
  assert 'RESPONSE' in pieces
  for word in tokenizer_lib.CONTROL_WORDS + ('0', '1'):
    assert sp.encode(word, out_type=str) == ['\u2581', word]
    assert sp.piece_to_id(word) != tokenizer_lib.UNK_ID
  assert sp.decode(sp.encode('TSX Users')) == 'TSX Users'  # matched inside words, lossless


def test_forward_pass_on_real_tokens(tmp_path):
  experiment = config_lib.load(tiny_docs.get_config())
  result = forward_check.run(experiment, str(tmp_path))
  assert (tmp_path / 'tokenizer.model').exists()
  assert result['tokens'] == experiment.train.seq_len
  assert result['finite']
  # An untrained model's logits are ~N(0, 1) (unit-RMS final norm, fan-in
  # initialised projection), so its expected loss is about log(vocab) + 1/2:
  # never much below log(vocab) (Jensen), and far from a trained model's. Seen: +0.65.
  excess = result['loss'] - math.log(experiment.model.vocab_size)
  assert -0.25 < excess < 1.5


def test_forward_cli_reuses_the_workdir_tokenizer(tmp_path):
  command = [sys.executable, '-m', 'lamda_jax.main', '--config', 'tests/configs/tiny_docs.py', '--mode',
             'forward', '--workdir', str(tmp_path)]
  prepared = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=True)
  first = json.loads(prepared.stdout)
  # The console shows our phases; TFDS's narration of the same work is in the log.
  assert 'Preparing data source python_docs: done' in prepared.stderr
  assert 'Training the tokenizer (2048 pieces): done' in prepared.stderr
  for narration in ('Generating splits', 'Shuffling', 'Downloading and preparing',
                    'dataset_builder.py'):
    assert narration not in prepared.stderr
  log = (tmp_path / 'log.txt').read_text()
  assert 'Downloading and preparing dataset' in log and 'dataset_builder.py' in log
  model_file = tmp_path / 'tokenizer.model'
  mtime = model_file.stat().st_mtime_ns
  second = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                     timeout=300, check=True).stdout)
  assert model_file.stat().st_mtime_ns == mtime
  assert first == second  # same tokenizer, same seed: the same loss


def test_tokenizer_mode_trains_and_checks_on_held_out_text(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'lamda_jax.main', '--config', 'tests/configs/tiny_docs.py',
       '--mode', 'tokenizer', '--workdir', str(tmp_path)], cwd=ROOT, capture_output=True,
      text=True, timeout=300, check=True)
  report = json.loads(result.stdout)
  assert report['path'] == str(tmp_path / 'tokenizer.model') and os.path.exists(report['path'])
  assert report['vocab_size'] == 2048 and report['held_out_texts'] > 0
  assert report['round_trip_exact'] and report['unknown_tokens'] == 0
  assert report['chars_per_token'] > 2.5  # BPE compresses; bytes alone would give ~1
  assert report['control_words']['RESPONSE'] == ['\u2581', 'RESPONSE']
