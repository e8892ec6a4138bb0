"""The layout of the codebase itself: one concept per module, no import cycles, modules a reader
can hold in their head, the task chosen in one place, and the package standing on its own."""

import ast
import os
import re

import pytest

from conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, 'spatialmix_jax')
MAX_LINES = 400


def _modules():
  return sorted(f[:-3] for f in os.listdir(PACKAGE) if f.endswith('.py'))


def _source(name):
  with open(os.path.join(PACKAGE, f'{name}.py')) as f:
    return f.read()


def _package_imports(name):
  """Modules of the package that `name` imports, at any depth of its code (lazy ones too)."""
  found = set()
  for node in ast.walk(ast.parse(_source(name))):
    if isinstance(node, ast.ImportFrom) and node.module == 'spatialmix_jax':
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('spatialmix_jax.'):
      found.add(node.module.split('.')[1])
    elif isinstance(node, ast.Import):
      found.update(a.name.split('.')[1] for a in node.names
                   if a.name.startswith('spatialmix_jax.'))
  return found - {'__init__'}


def test_no_import_cycle_inside_the_package():
  graph = {name: _package_imports(name) for name in _modules()}
  state = {}  # name -> 'open' while on the DFS stack, 'done' after

  def visit(name, path):
    state[name] = 'open'
    for target in sorted(graph.get(name, ())):
      assert state.get(target) != 'open', f'import cycle: {" -> ".join(path + [target])}'
      if target not in state:
        visit(target, path + [target])
    state[name] = 'done'

  for name in graph:
    if name not in state:
      visit(name, [name])


def _python_files():
  files = [os.path.join(PACKAGE, f'{m}.py') for m in _modules()]
  files += [os.path.join(REPO_ROOT, 'main.py')]
  bench = os.path.join(REPO_ROOT, 'benchmarks')
  files += sorted(os.path.join(bench, f) for f in os.listdir(bench) if f.endswith('.py'))
  return files


@pytest.mark.parametrize('path', _python_files(), ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_no_module_over_the_line_limit(path):
  with open(path) as f:
    lines = len(f.read().splitlines())
  assert lines <= MAX_LINES, f'{os.path.relpath(path, REPO_ROOT)} has {lines} lines'


def test_the_task_is_switched_on_only_in_the_task_registry():
  switch = re.compile(r"""\btask\b['"\]]*\s*(==|!=|\bin\b)\s*[(\['"]"""
                      r"""|['"](classification|unshuffle)['"]\s*(==|!=)""")
  offenders = [f'{name}.py:{number}' for name in _modules() if name != 'tasks'
               for number, line in enumerate(_source(name).splitlines(), 1)
               if switch.search(line)]
  assert not offenders, offenders


def test_the_package_does_not_reach_into_the_repository():
  """An installed package has no configs/ or tests/ beside it."""
  offenders = [name for name in _modules()
               if re.search(r'^\s*(from|import)\s+(configs|tests|benchmarks)\b', _source(name),
                            re.MULTILINE)]
  assert not offenders, offenders
