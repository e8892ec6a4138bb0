"""The layout of the codebase itself: one concept per folder, imports that run one way between
folders (the order in the package docstring), no import cycle, modules a reader can hold in
their head, the task chosen in one place, and the package standing on its own."""

import ast
import os
import re

import pytest

import spatialmix_jax
from conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, 'spatialmix_jax')
MAX_LINES = 400
REPOSITORY_FOLDERS = ('configs', 'tests', 'benchmarks')


def _modules():
  """Dotted names under the package ('modeling.layers', ...), the package's own __init__ as ''."""
  names = []
  for folder, _, files in os.walk(PACKAGE):
    relative = os.path.relpath(folder, PACKAGE)
    for f in files:
      if f.endswith('.py'):
        parts = [] if relative == '.' else relative.split(os.sep)
        if f != '__init__.py':
          parts.append(f[:-3])
        names.append('.'.join(parts))
  return sorted(names)


def _path(name):
  folder = os.path.join(PACKAGE, *name.split('.')) if name else PACKAGE
  if os.path.isdir(folder):
    return os.path.join(folder, '__init__.py')
  return folder + '.py'


def _source(name):
  with open(_path(name)) as f:
    return f.read()


def _package_imports(name):
  """Modules of the package that `name` imports, at any depth of its code (lazy ones too)."""
  found = set()
  for node in ast.walk(ast.parse(_source(name))):
    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('spatialmix_jax'):
      base = node.module[len('spatialmix_jax.'):] if '.' in node.module else ''
      for alias in node.names:
        candidate = f'{base}.{alias.name}' if base else alias.name
        found.add(candidate if os.path.exists(_path(candidate)) else base)
    elif isinstance(node, ast.Import):
      found.update(a.name[len('spatialmix_jax.'):] for a in node.names
                   if a.name.startswith('spatialmix_jax.'))
  return found - {''}


def _folder(name):
  return name.split('.')[0]


def test_every_folder_is_in_the_documented_order():
  folders = sorted(d for d in os.listdir(PACKAGE)
                   if os.path.isfile(os.path.join(PACKAGE, d, '__init__.py')))
  assert sorted(spatialmix_jax.FOLDERS) == folders
  for folder in spatialmix_jax.FOLDERS:  # the package docstring states the order
    assert re.search(rf'^  {folder}\b', spatialmix_jax.__doc__, re.MULTILINE), folder
  top_level = [n for n in _modules() if n and '.' not in n and n not in spatialmix_jax.FOLDERS]
  assert not top_level, f'modules outside every folder: {top_level}'


def test_imports_run_one_way_between_folders():
  rank = {folder: index for index, folder in enumerate(spatialmix_jax.FOLDERS)}
  against = []
  for name in _modules():
    if not name:  # the package's public API sits above every folder
      continue
    for target in _package_imports(name):
      if rank[_folder(target)] > rank[_folder(name)]:
        against.append(f'{name} -> {target}')
  assert not against, f'imports against the folder order {spatialmix_jax.FOLDERS}: {against}'


def test_the_layout_check_sees_an_import_against_the_order(tmp_path):
  """The check above would flag a lower folder reaching up (guards the parser itself)."""
  source = 'from spatialmix_jax.jobs import train\nimport spatialmix_jax.study.sweep\n'
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom):
      found.add(f'{node.module[len("spatialmix_jax."):]}.{node.names[0].name}')
    elif isinstance(node, ast.Import):
      found.add(node.names[0].name[len('spatialmix_jax.'):])
  assert {_folder(t) for t in found} == {'jobs', 'study'}
  assert _package_imports('modeling.models') >= {'modeling.layers', 'kernels.depthwise'}


def test_no_import_cycle_inside_the_package():
  graph = {name: _package_imports(name) for name in _modules() if name}
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
  files = [_path(m) for m in _modules()]
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
  offenders = [f'{name}.py:{number}' for name in _modules() if name != 'objectives.tasks'
               for number, line in enumerate(_source(name).splitlines(), 1)
               if switch.search(line)]
  assert not offenders, offenders


def _reaches_into_the_repository(source):
  """Imports of configs/tests/benchmarks: by statement, by a call of importlib's
  `import_module` or `__import__` on such a name, or by a dotted module name in a string
  (`'configs.base'`, `f'configs.{recipe}'`) that could be handed to one."""
  folders = '|'.join(REPOSITORY_FOLDERS)
  module_name = re.compile(rf'({folders})(\.|$)')
  dotted = re.compile(rf'({folders})\.([A-Za-z_]\w*)?')

  def leading_text(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0],
                                                                       ast.Constant):
      return str(node.values[0].value)
    return None

  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom) and module_name.match(node.module or ''):
      found.append(node.module)
    elif isinstance(node, ast.Import):
      found += [a.name for a in node.names if module_name.match(a.name)]
    elif isinstance(node, ast.Call) and node.args and (
        getattr(node.func, 'attr', None) == 'import_module'
        or getattr(node.func, 'id', None) in ('import_module', '__import__')):
      text = leading_text(node.args[0])
      if text is not None and module_name.match(text):
        found.append(text)
    elif (text := leading_text(node)) is not None and dotted.fullmatch(text.strip()):
      found.append(text)
  return found


def test_the_layout_check_sees_importlib_strings():
  assert _reaches_into_the_repository("importlib.import_module(f'configs.{name}')")
  assert _reaches_into_the_repository("importlib.import_module('configs.base')")
  assert _reaches_into_the_repository('from configs import base')
  assert _reaches_into_the_repository("__import__('benchmarks')")
  assert _reaches_into_the_repository("RECIPE = 'configs.convmixer_cifar10'")
  assert not _reaches_into_the_repository("folder = 'configs'")  # a folder, not a module
  assert not _reaches_into_the_repository("path = 'configs/base.py is a file'")


def test_the_package_does_not_reach_into_the_repository():
  """An installed package has no configs/ or tests/ beside it."""
  offenders = {name: found for name in _modules()
               if (found := _reaches_into_the_repository(_source(name)))}
  assert not offenders, offenders


def test_the_public_api_resolves_every_name():
  for name in spatialmix_jax.__all__:
    assert getattr(spatialmix_jax, name) is not None, name
  with pytest.raises(AttributeError, match='no attribute'):
    getattr(spatialmix_jax, 'not_a_name')


@pytest.mark.parametrize('old, new', [('sweep', 'study.sweep'),
                                      ('torch_weights', 'interop.torch_weights')])
def test_a_moved_entry_point_names_its_new_module_in_one_line(old, new):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  completed = subprocess.run([sys.executable, '-m', f'spatialmix_jax.{old}', '--help'],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                             check=False)
  assert completed.returncode != 0
  lines = completed.stderr.strip().splitlines()
  assert len(lines) == 1 and f'python -m spatialmix_jax.{new}' in lines[0], lines
