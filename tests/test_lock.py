"""requirements.lock is current: it pins every requirement of setup.py (dev
extras included) within setup.py's range, and the suite runs on those pins."""

import ast
import importlib.metadata
import pathlib
import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _setup_requirements() -> list[Requirement]:
  """install_requires and every extra, read from setup.py's source (not run)."""
  call = next(node for node in ast.walk(ast.parse((ROOT / 'setup.py').read_text()))
              if isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'setup')
  values = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords
            if keyword.arg in ('install_requires', 'extras_require')}
  found = list(values['install_requires'])
  for extra in values.get('extras_require', {}).values():
    found += extra
  return [Requirement(text) for text in found]


def _locked() -> dict[str, str]:
  pins = {}
  for line in (ROOT / 'requirements.lock').read_text().splitlines():
    match = re.match(r'^([A-Za-z0-9_.\-]+)==([^\s;]+)', line)
    if match:
      pins[canonicalize_name(match.group(1))] = match.group(2)
  return pins


def test_the_lock_pins_every_requirement_within_its_range():
  pins = _locked()
  for requirement in _setup_requirements():
    name = canonicalize_name(requirement.name)
    assert name in pins, f'{requirement} is not in requirements.lock: run `make lock`'
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f'requirements.lock pins {name}=={pins[name]}, outside setup.py\'s {requirement}: '
        'run `make lock`')


def test_the_suite_runs_on_the_locked_versions():
  wrong = {name: (version, importlib.metadata.version(name))
           for name, version in _locked().items()
           if importlib.metadata.version(name) != version}
  assert not wrong, f'installed versions differ from requirements.lock (locked, installed): {wrong}'
