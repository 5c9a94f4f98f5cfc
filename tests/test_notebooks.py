"""Every notebook's code cells run top to bottom (shell lines like `!pip` are Colab-only)."""

import glob
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb'))),
                         ids=os.path.basename)
def test_notebook_runs(path, capsys):
  with open(path, encoding='utf-8') as f:
    notebook = json.load(f)
  namespace = {}
  for cell in notebook['cells']:
    if cell['cell_type'] == 'code':
      source = ''.join(line for line in cell['source'] if not line.lstrip().startswith(('!', '%')))
      exec(compile(source, path, 'exec'), namespace)  # pylint: disable=exec-used
  printed = capsys.readouterr().out
  assert 'non-embedding parameters: 137.4B' in printed
  assert '(2, 4, 8)' in printed  # 2 prompts x 4 candidates x 8 sampled tokens
