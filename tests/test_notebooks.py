"""The notebooks run top to bottom in a real Jupyter kernel (nbclient), from
notebooks/, with small budgets injected after their `parameters` cell as
papermill does; a cell error fails the test. Committed notebooks carry no outputs.
Not marked slow: `make test` runs them (about 3 minutes of the suite)."""

import glob
import importlib.util
import json
import os
import sys

from jupyter_client.kernelspec import KernelSpec
import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, 'notebooks')
PATHS = sorted(glob.glob(os.path.join(NOTEBOOKS, '*.ipynb')))


def execute(path: str, parameters: dict) -> nbformat.NotebookNode:
  """The notebook, run in a kernel of this interpreter with `parameters` set
  in a cell inserted after the one tagged 'parameters'."""
  notebook = nbformat.read(path, as_version=4)
  tagged = [index for index, cell in enumerate(notebook.cells)
            if 'parameters' in cell.metadata.get('tags', [])]
  assert len(tagged) == 1, f'{path}: one cell must be tagged "parameters"'
  notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(
      '\n'.join(f'{name} = {value!r}' for name, value in parameters.items()),
      metadata={'tags': ['injected-parameters']}))
  client = nbclient.NotebookClient(notebook, timeout=900, kernel_name='python3',
                                   resources={'metadata': {'path': NOTEBOOKS}})
  # This interpreter (the project's venv), not whichever `python` is first on PATH.
  client.km = client.create_kernel_manager()
  client.km._kernel_spec = KernelSpec(  # pylint: disable=protected-access
      argv=[sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      display_name='lamda_jax', language='python')
  client.execute()
  return notebook


def outputs_of(notebook) -> tuple[str, list[str]]:
  """(all text the cells printed or displayed, the MIME types of every output)."""
  texts, kinds = [], []
  for cell in notebook.cells:
    for output in cell.get('outputs', []):
      texts.append(output.get('text', ''))
      for kind, data in output.get('data', {}).items():
        kinds.append(kind)
        if kind.startswith('text/'):
          texts.append(data)
  return '\n'.join(texts), kinds


def test_colab_installs_the_jax_build_of_its_accelerator():
  spec = importlib.util.spec_from_file_location('runtime', os.path.join(NOTEBOOKS, 'runtime.py'))
  runtime = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(runtime)
  def build(device=None, tool=None, environ=None):
    return runtime.jax_build(exists=lambda path: path == device,
                             which=lambda name: name == tool, environ=environ or {})
  assert build(device='/dev/accel0') == 'jax[tpu]'
  assert build(environ={'COLAB_TPU_ADDR': '10.0.0.2:8470'}) == 'jax[tpu]'
  assert build(tool='nvidia-smi') == 'jax[cuda12]'
  assert build() == 'jax'


@pytest.mark.parametrize('path', PATHS, ids=os.path.basename)
def test_committed_notebooks_are_valid_and_stripped_of_outputs(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  for index, cell in enumerate(notebook.cells):
    if cell.cell_type == 'code':
      assert not cell.outputs and cell.execution_count is None, (
          f'{os.path.basename(path)} cell {index} has outputs: strip them before committing '
          '(jupyter nbconvert --clear-output --inplace)')


def test_quickstart_trains_plots_and_ranks(tmp_path, monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('XLA_FLAGS', '')  # one CPU device, as on a laptop
  notebook = execute(os.path.join(NOTEBOOKS, 'quickstart.ipynb'), {
      'STEPS': 4, 'WORKDIR': str(tmp_path / 'run'), 'SOURCES': ('python_docs',),
      'NUM_CANDIDATES': 4})
  text, kinds = outputs_of(notebook)
  assert '| lamda_137b | 64 | 8192 | 128 x 128 | 65536 | 137.4B |' in text
  assert 'step 4: loss' in text
  assert 'image/png' in kinds  # the loss curve, inline
  assert (tmp_path / 'run' / 'curves.png').exists()
  table = [line for line in text.splitlines() if line.startswith('| ')]
  header = table.index('| rank | score | SENSIBLE | SPECIFIC | INTERESTING | UNSAFE | dropped '
                       '| candidate |')
  assert [row.split(' | ')[0] for row in table[header + 1:header + 5]] == [
      '| 1', '| 2', '| 3', '| 4']  # every candidate, ranked


def test_finetune_and_rank_measures_calibrates_and_filters(tmp_path, monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('XLA_FLAGS', '')
  labels = tmp_path / 'labels.jsonl'  # 240 rated responses over 40 conversations
  words = 'value function object class return list string number module method'.split()
  labels.write_text(''.join(json.dumps({
      'conversation': f'c{i % 40}', 'context': [{'speaker': 'A', 'text': f'{words[i % 10]} '
                                                                         f'{words[i // 10 % 10]}'}],
      'response': {'speaker': 'B', 'text': words[i % 7]},
      'labels': {'SENSIBLE': i % 2, 'SPECIFIC': int(i % 3 == 0), 'UNSAFE': int(i % 5 == 0)}}) + '\n'
      for i in range(240)))
  notebook = execute(os.path.join(NOTEBOOKS, 'finetune_and_rank.ipynb'), {
      'PRETRAIN_STEPS': 2, 'FINETUNE_STEPS': 2, 'WORKDIR': str(tmp_path / 'run'),
      'SOURCES': ('python_docs',), 'LABELS': (str(labels),), 'CONTEXTS': 2, 'NUM_CANDIDATES': 3})
  text, kinds = outputs_of(notebook)
  assert kinds.count('image/png') == 2  # the curves and the reliability diagram
  table = [line for line in text.splitlines() if line.startswith('| ')]
  assert [row.split(' | ')[0] for row in table if row.startswith(('| SENSIBLE', '| SPECIFIC',
                                                                  '| UNSAFE'))] == [
      '| SENSIBLE', '| SPECIFIC', '| UNSAFE']  # INTERESTING has no labels here
  filtered = {row.split(' | ')[0][2:]: row.split(' | ') for row in table
              if row.startswith(('| keep everything', '| config defaults', '| strict'))}
  assert list(filtered) == ['keep everything', 'config defaults', 'strict']
  candidates, kept = ({name: int(row[index]) for name, row in filtered.items()} for index in (1, 2))
  assert set(candidates.values()) == {2 * 3}  # 2 contexts x 3 candidates, scored each time
  assert kept['keep everything'] == 6 >= kept['config defaults'] >= kept['strict']


def test_grounded_research_runs_the_toolset_the_loop_and_the_metrics(tmp_path, monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('XLA_FLAGS', '')
  labels = tmp_path / 'labels.jsonl'
  labels.write_text(''.join(json.dumps({
      'conversation': f'c{i % 20}', 'context': [{'speaker': 'A', 'text': f'question {i}'}],
      'response': {'speaker': 'B', 'text': 'an answer'}, 'labels': {'SENSIBLE': i % 2}}) + '\n'
      for i in range(60)))
  notebook = execute(os.path.join(NOTEBOOKS, 'grounded_research.ipynb'), {
      'PRETRAIN_STEPS': 2, 'RESEARCH_STEPS': 2, 'WORKDIR': str(tmp_path / 'run'),
      'SOURCES': ('python_docs',), 'LABELS': (str(labels),), 'RESEARCH_PER_KIND': 20,
      'QUESTIONS': 3})
  text, _ = outputs_of(notebook)
  assert '| 135 plus 7721 | calculator | 7856 |' in text  # the toolset on its own
  assert 'LAMDA-RESEARCH:' in text and 'reply:' in text  # a transcript in the paper's format
  systems = [row.split(' | ')[1] for row in text.splitlines() if row.startswith('| all (3)')]
  assert systems == ['base', 'research']
