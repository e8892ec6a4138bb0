"""Test setup: CPU only, quiet TensorFlow, the repository root importable (for configs/), and
the fixtures several test files share."""

import os
import shutil
import sys

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config():
  from configs import default  # pylint: disable=g-import-not-at-top
  from golden import runs  # pylint: disable=g-import-not-at-top
  return runs.tiny_budget(default.get_config())


@pytest.fixture
def tiny_config():
  """A seconds-sized digits run: the full pipeline with a minute model."""
  return _tiny_config()


@pytest.fixture(scope='session')
def trained_digits_run(tmp_path_factory):
  """(workdir, results) of `tiny_config` trained once for the whole session; read-only, see
  `trained_digits`."""
  from spatialmix_jax.jobs import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('trained_digits') / 'run'
  return workdir, train.train_and_evaluate(_tiny_config(), str(workdir))


@pytest.fixture
def trained_digits(trained_digits_run, tmp_path):
  """(workdir, results): a copy of the session's trained `tiny_config` run (six steps, a
  checkpoint at steps 3 and 6) in this test's own folder, free to change."""
  workdir, results = trained_digits_run
  copy = tmp_path / 'trained'
  shutil.copytree(workdir, copy)
  return copy, results
