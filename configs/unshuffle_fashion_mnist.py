"""Pixel un-shuffling (paper §4.4) on Fashion-MNIST (28×28, TFDS-prepared).

  python main.py --config=configs/unshuffle_fashion_mnist.py \
      --workdir=/tmp/spatialmix/unshuffle_fmnist --config.mode=chans \
      --config.data_dir=../shared/tensorflow_datasets

Depth 8 × (kernel 9 - 1) + 1 = 65 ≥ 2 × 28 - 1: every output pixel sees every input pixel.
Expected (not yet measured here): chans well above scrambled_psnr, close to full.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.dataset = 'fashion_mnist'
  config.task = 'unshuffle'
  config.mode = 'chans'
  config.model.name = 'unshuffle_convmixer'
  config.model.width = 256
  config.model.depth = 8
  config.model.kernel_size = 9
  config.model.patch_size = 1
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = 10
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.002
  config.optimizer.weight_decay = 0.0
  config.optimizer.schedule = 'onecycle'
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  return config
