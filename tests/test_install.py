"""The package as a user installs it: a wheel, not editable, in a fresh virtual environment,
used from a folder outside the repository. The default job trains (a few steps of a smaller
model), `--job=eval` evaluates it, and a PyTorch state dict imports, with no file of the
repository on any path.

A user reaches a config by its path: the repository's `configs/` folder is not installed, so
the test copies it next to the run, as a user keeps a copy (`configs/default.py` needs only
the package; the others also import their siblings from `configs/`).

The wheel is built from this checkout's files (tracked and new, as `git ls-files` lists them)
and installed by pip, which resolves every declared requirement, with no index: each must
already be satisfied. They are the running environment's distributions, seen through a
folder of links that leaves out this project's own (editable) install, so pip checks the
package's requirements against real distributions while nothing is downloaded (the CPU torch
wheel alone is hundreds of megabytes). One install serves the whole module: the `install`
marker names it, for `-m 'not install'` in a quick local run.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO_ROOT
from tests import torch_helpers as th

pytestmark = pytest.mark.install

_OWN = ('spatialmix_jax', 'spatialmix-jax', '__editable__')


def _checkout_copy(target):
  """The checkout's tracked and untracked-but-not-ignored files (no build outputs, no venv)."""
  listed = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO_ROOT,
                          capture_output=True, check=True).stdout.decode().split('\0')
  for relative in filter(None, listed):
    source = os.path.join(REPO_ROOT, relative)
    if os.path.isfile(source):  # a file deleted but not yet committed is listed too
      os.makedirs(os.path.join(target, os.path.dirname(relative)), exist_ok=True)
      shutil.copy2(source, os.path.join(target, relative))
  return target


def _dependency_links(target):
  """Links to every distribution of this interpreter's site-packages but this project's own."""
  site = sysconfig.get_paths()['purelib']
  os.makedirs(target)
  for name in os.listdir(site):
    # .pth files are not read from a folder a .pth adds, and the editable finder is one.
    if not name.lower().startswith(_OWN) and not name.endswith('.pth'):
      os.symlink(os.path.join(site, name), os.path.join(target, name))
  return target


def _check(completed):
  assert completed.returncode == 0, (completed.stdout[-2000:], completed.stderr[-4000:])
  return completed


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  root = tmp_path_factory.mktemp('install')
  source = _checkout_copy(str(root / 'source'))
  _check(subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-index',
                         '--no-build-isolation', '-w', str(root / 'dist'), source],
                        capture_output=True, text=True, timeout=600, check=False))
  wheel, = (root / 'dist').glob('spatialmix_jax-*.whl')
  venv = root / 'venv'
  base_python = sys._base_executable  # pylint: disable=protected-access
  _check(subprocess.run([base_python, '-m', 'venv', str(venv)],
                        capture_output=True, text=True, timeout=600, check=False))
  python = str(venv / 'bin' / 'python')
  venv_site = _check(subprocess.run(
      [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
      capture_output=True, text=True, check=False)).stdout.strip()
  with open(os.path.join(venv_site, 'dependencies.pth'), 'w') as f:
    f.write(_dependency_links(str(root / 'dependencies')) + '\n')
  # pip's own config may name extra indexes or wheel folders; none is wanted here.
  pip_env = {**os.environ, 'PIP_CONFIG_FILE': os.devnull, 'PIP_FIND_LINKS': ''}
  _check(subprocess.run([python, '-m', 'pip', 'install', '--no-index', str(wheel)],
                        capture_output=True, text=True, timeout=600, check=False, env=pip_env))
  user = root / 'user'  # where the user works: a copy of configs/, nothing else
  shutil.copytree(os.path.join(REPO_ROOT, 'configs'), user / 'configs',
                  ignore=shutil.ignore_patterns('__pycache__'))
  env = {'PATH': f'{venv / "bin"}:{os.environ["PATH"]}', 'HOME': str(user),
         'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '2',
         # The session's cache (the prepared digits, the native kernel) where it has one.
         'SPATIALMIX_CACHE_DIR': os.environ.get('SPATIALMIX_CACHE_DIR', str(root / 'cache'))}

  def run(*argv):
    return _check(subprocess.run(list(argv), cwd=user, env=env, capture_output=True, text=True,
                                 timeout=600, check=False))

  return {'python': python, 'site': venv_site, 'user': user, 'run': run}


def test_the_package_is_the_installed_wheel_and_the_repository_is_on_no_path(installed):
  probe = installed['run'](installed['python'], '-c', (
      'import importlib.metadata, json, sys, spatialmix_jax; '
      'dist = importlib.metadata.distribution("spatialmix-jax"); '
      'print(json.dumps({"file": spatialmix_jax.__file__, "path": sys.path, '
      '"direct_url": dist.read_text("direct_url.json")}))'))
  seen = json.loads(probe.stdout)
  assert seen['file'] == os.path.join(installed['site'], 'spatialmix_jax', '__init__.py')
  assert not any(p and os.path.realpath(p).startswith(os.path.realpath(REPO_ROOT))
                 for p in seen['path'])
  # pip records an editable install as such; a wheel install has no "editable" mark.
  assert 'editable' not in (seen['direct_url'] or '')


def test_the_default_job_and_its_evaluation_run_outside_the_repository(installed):
  config = installed['user'] / 'configs' / 'default.py'
  small = ['--config.num_train_steps=10', '--config.model.width=16', '--config.model.depth=1']
  installed['run']('spatialmix-jax', f'--config={config}', '--workdir=run', *small)
  results = json.loads((installed['user'] / 'run' / 'results.json').read_text())
  assert (results['step'], results['num_test_examples'], results['dataset']) == (10, 360,
                                                                               'digits')
  installed['run'](installed['python'], '-m', 'spatialmix_jax.jobs.main', f'--config={config}',
                   '--workdir=run', '--job=eval', *small)
  evaluated = json.loads((installed['user'] / 'run' / 'eval.json').read_text())
  assert evaluated['step'] == 10
  # The same checkpoint, evaluated again: the same metrics.
  assert evaluated['test_accuracy'] == pytest.approx(results['test_accuracy'], abs=1e-6)


def test_a_weight_import_runs_outside_the_repository(installed):
  th.import_torch()
  model = th.locuslab_convmixer(8, 2, 3, patch_size=1, n_classes=10, in_chans=1)
  checkpoint = th.save(model.state_dict(), installed['user'] / 'locuslab.pth')
  imported = installed['run'](
      installed['python'], '-m', 'spatialmix_jax.interop.torch_weights', 'import',
      '--source=locuslab', f'--checkpoint={checkpoint}', '--workdir=imported',
      '--dataset=digits')
  assert json.loads(imported.stdout)['model']['width'] == 8
  saved = json.loads((installed['user'] / 'imported' / 'config.json').read_text())
  assert (saved['dataset'], saved['model']['name'], saved['model']['width']) == (
      'digits', 'convmixer', 8)
  assert (installed['user'] / 'imported' / 'checkpoints' / '0').is_dir()
