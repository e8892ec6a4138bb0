"""Test setup: CPU only, quiet TensorFlow, the repository root importable (for configs/)."""

import os
import sys

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny_config():
  """A seconds-sized digits run: the full pipeline with a minute model."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from golden import runs  # pylint: disable=g-import-not-at-top
  return runs.tiny_budget(default.get_config())
