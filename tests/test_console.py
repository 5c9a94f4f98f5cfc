"""The console: our messages and real warnings shown, library narration logged."""

import logging
import sys

from lamda_jax import console


def _record(pathname: str, level: int) -> logging.LogRecord:
  return logging.LogRecord('any', level, pathname, 1, 'message', (), None)


def test_the_console_shows_ours_and_warnings_and_logs_narration():
  ours = console._PACKAGE + 'training/loop.py'
  orbax = '/venv/site-packages/orbax/checkpoint/checkpoint_manager.py'
  tfds = '/venv/site-packages/tensorflow_datasets/core/dataset_builder.py'
  other = '/venv/site-packages/jax/_src/xla_bridge.py'
  assert console._for_the_console(_record(ours, logging.INFO))
  assert not console._for_the_console(_record(other, logging.INFO))
  assert console._for_the_console(_record(other, logging.WARNING))
  for narrator in (orbax, tfds):
    assert not console._for_the_console(_record(narrator, logging.INFO))
    assert not console._for_the_console(_record(narrator, logging.WARNING))
    assert console._for_the_console(_record(narrator, logging.ERROR))


def test_library_output_goes_to_the_log_when_quiet(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(console._quiet, 'log', str(tmp_path / 'run' / 'log.txt'))
  with console.library_output():
    print('Shuffling ...')
    print('progress', file=sys.stderr)
  captured = capsys.readouterr()
  assert captured.out == captured.err == ''
  assert (tmp_path / 'run' / 'log.txt').read_text() == 'Shuffling ...\nprogress\n'
  monkeypatch.setitem(console._quiet, 'log', None)  # verbose: to stderr, never stdout
  with console.library_output():
    print('Shuffling ...')
  captured = capsys.readouterr()
  assert captured.out == '' and captured.err == 'Shuffling ...\n'


def test_a_phase_says_when_it_is_done(capsys):
  with console.phase('Packing rows'):
    pass
  assert 'Packing rows: done' in capsys.readouterr().err
