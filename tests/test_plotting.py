"""Run curves: the plotted lines are the records of metrics.jsonl."""

import json

import pytest

from experiments import plot_run
from lamda_jax.training import plotting


def _run(path, records):
  path.mkdir()
  (path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  return str(path)


def test_the_lines_are_the_runs_records(tmp_path):
  first = _run(tmp_path / 'pretrain', [
      {'step': 1, 'loss': 8.0, 'tokens': 100.0},
      {'step': 2, 'loss': 6.0, 'tokens_per_second': 900.0, 'mfu': 0.3},
      {'step': 2, 'eval/loss': 6.5, 'eval/accuracy': 0.1}])
  second = _run(tmp_path / 'finetune', [
      {'step': 1, 'loss': 5.0, 'generator/accuracy': 0.2, 'SENSIBLE/accuracy': 0.5}])
  third = _run(tmp_path / 'evaluated', [  # held-out accuracy, when there is one, replaces it
      {'step': 1, 'loss': 4.0, 'generator/accuracy': 0.3},
      {'step': 1, 'eval/loss': 4.5, 'eval/generator/accuracy': 0.25}])
  output = tmp_path / 'out' / 'curves.png'
  figure = plotting.plot_runs([first, second, third], str(output))
  assert output.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  lines = {(axis.get_title(), line.get_label()): (list(line.get_xdata()), list(line.get_ydata()))
           for axis in figure.axes for line in axis.lines}
  assert lines == {
      ('loss', 'pretrain: loss'): ([1, 2], [8.0, 6.0]),
      ('loss', 'pretrain: eval/loss'): ([2], [6.5]),
      ('accuracy', 'pretrain: eval/accuracy'): ([2], [0.1]),
      ('tokens per second', 'pretrain: tokens_per_second'): ([2], [900.0]),
      ('loss', 'finetune: loss'): ([1], [5.0]),
      ('accuracy', 'finetune: generator/accuracy'): ([1], [0.2]),
      ('accuracy', 'finetune: SENSIBLE/accuracy'): ([1], [0.5]),
      ('loss', 'evaluated: loss'): ([1], [4.0]),
      ('loss', 'evaluated: eval/loss'): ([1], [4.5]),
      ('accuracy', 'evaluated: eval/generator/accuracy'): ([1], [0.25]),
  }


def test_the_script_names_a_folder_that_is_not_a_run(tmp_path, capsys):
  with pytest.raises(FileNotFoundError, match='no metrics.jsonl'):
    plot_run.main([str(tmp_path), '--output', str(tmp_path / 'x.png')])
  run = _run(tmp_path / 'run', [{'step': 1, 'loss': 3.0}])
  plot_run.main([run, '--output', str(tmp_path / 'x.png')])
  assert capsys.readouterr().out.strip() == str(tmp_path / 'x.png')
