"""Text to logits on real tokens: the tokenizer and an untrained forward pass."""

import math
import os
import subprocess
import sys
import json

from configs import tiny
from lamda_jax import config as config_lib
from lamda_jax import corpora
from lamda_jax import forward_check
from lamda_jax import tokenizer as tokenizer_lib

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


def test_forward_pass_on_real_tokens(tmp_path):
  experiment = config_lib.load(tiny.get_config())
  result = forward_check.run(experiment, str(tmp_path))
  assert (tmp_path / 'tokenizer.model').exists()
  assert result['tokens'] == experiment.train.seq_len
  assert result['finite']
  # An untrained model predicts near-uniformly: loss within a few nats of log(vocab).
  assert abs(result['loss'] - math.log(experiment.model.vocab_size)) < 3


def test_forward_cli_reuses_the_workdir_tokenizer(tmp_path):
  command = [sys.executable, '-m', 'lamda_jax.main', '--config', 'configs/tiny.py', '--mode',
             'forward', '--workdir', str(tmp_path)]
  first = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                    timeout=300, check=True).stdout)
  model_file = tmp_path / 'tokenizer.model'
  mtime = model_file.stat().st_mtime_ns
  second = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                     timeout=300, check=True).stdout)
  assert model_file.stat().st_mtime_ns == mtime
  assert first == second  # same tokenizer, same seed: the same loss
