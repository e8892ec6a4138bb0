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
  config = default.get_config()
  config.model.width = 16
  config.model.depth = 2
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_train_steps = 6
  config.log_every_steps = 3
  config.checkpoint_every_steps = 3
  return config
