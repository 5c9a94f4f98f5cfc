"""The package's layering, kept by CI: imports point one way.

  config, attributes, console <- model <- data <- training <- finetune <- serving <- grounding <- main

A module may import its own subpackage and the layers below it, never above.
Inference (serving) may read checkpoints and shard parameters, but never
stands on the train loop. Imports are read from the source (ast), including
those inside functions, so a lazy import cannot hide a wrong arrow.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'lamda_jax'
LAYERS = ('config', 'attributes', 'model', 'data', 'training', 'finetune', 'serving',
          'grounding', 'main')
RANK = {name: rank for rank, name in enumerate(LAYERS)}
RANK['attributes'] = RANK['config']  # the shared vocabulary: one layer
RANK['console'] = RANK['config']  # what a person sees, for every layer


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))}


def imports_of(module: str) -> set[str]:
  """The lamda_jax modules `module` imports (a `from package import name` of a
  submodule counts as that submodule)."""
  found = set()
  for node in ast.walk(ast.parse(MODULES[module].read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names if alias.name.startswith('lamda_jax'))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('lamda_jax'):
      for alias in node.names:
        submodule = f'{node.module}.{alias.name}'
        found.add(submodule if submodule in MODULES else node.module)
  return found - {'lamda_jax'}


def layer(module: str) -> str:
  return module.split('.')[1]


def closure(module: str) -> set[str]:
  seen, todo = set(), [module]
  while todo:
    for imported in imports_of(todo.pop()):
      if imported not in seen:
        seen.add(imported)
        todo.append(imported)
  return seen


def test_every_module_is_in_a_layer():
  assert {layer(m) for m in MODULES if m != 'lamda_jax'} <= set(RANK)


@pytest.mark.parametrize('module', sorted(m for m in MODULES if m != 'lamda_jax'))
def test_imports_point_down(module):
  wrong = sorted(imported for imported in imports_of(module)
                 if RANK[layer(imported)] > RANK[layer(module)])
  assert not wrong, f'{module} imports {wrong} from a layer above its own ({layer(module)})'


def test_reading_a_run_does_not_import_the_train_loop():
  for module in MODULES:
    if module != 'lamda_jax' and layer(module) in ('model', 'data', 'serving'):
      assert 'lamda_jax.training.loop' not in closure(module), module


def test_the_check_sees_a_wrong_arrow(tmp_path, monkeypatch):
  """A model module importing the train loop is caught."""
  bad = tmp_path / 'bad.py'
  bad.write_text('def f():\n  from lamda_jax.training import loop\n')
  monkeypatch.setitem(MODULES, 'lamda_jax.model.bad', bad)
  assert imports_of('lamda_jax.model.bad') == {'lamda_jax.training.loop'}
  with pytest.raises(AssertionError, match='from a layer above'):
    test_imports_point_down('lamda_jax.model.bad')


def test_importing_the_command_line_starts_no_xla_backend():
  """A multi-host run calls jax.distributed.initialize after importing every
  module; an import that computes (bm25s probes jax.lax.top_k) would make
  that call fail. Every module the CLI imports is imported here."""
  code = ('import lamda_jax.main; from jax._src import xla_bridge; '
          'print(xla_bridge.backends_are_initialized())')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True, cwd=PACKAGE.parent, timeout=300)
  assert result.stdout.strip() == 'False', result.stderr[-2000:]
