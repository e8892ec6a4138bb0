"""The embedded default: a ConvMixer in chans mode on scikit-learn's handwritten digits.

Needs no download (the digits ship with scikit-learn). Command:

  python main.py --config=configs/default.py --workdir=/tmp/spatialmix/digits

Expected: test_accuracy ≈ 0.95 on the 360 test digits in about a minute on 2 CPU cores.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.dataset = 'digits'
  config.mode = 'chans'
  config.model.name = 'convmixer'
  config.model.width = 64
  config.model.depth = 4
  config.model.kernel_size = 3
  config.model.patch_size = 1
  config.batch_size = 64
  config.eval_batch_size = 128
  config.num_epochs = 15
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.01
  config.optimizer.weight_decay = 0.01
  config.optimizer.schedule = 'onecycle'
  config.log_every_steps = 20
  config.checkpoint_every_steps = 100
  return config
