"""Pixel un-shuffling (paper §4.4) on Fashion-MNIST (28×28, TFDS-prepared).

  python main.py --config=configs/unshuffle_fashion_mnist.py \
      --workdir=/tmp/spatialmix/unshuffle_fmnist --config.mode=chans \
      --config.data_dir=../shared/tensorflow_datasets

Depth 8 × (kernel 9 - 1) + 1 = 65 ≥ 2 × 28 - 1: every output pixel sees every input pixel.
Expected (not yet measured here): chans well above scrambled_psnr, close to full.
The same model and recipe as configs/unshuffle_mnist.py.
"""

from configs import unshuffle_mnist


def get_config():
  config = unshuffle_mnist.get_config()
  config.dataset = 'fashion_mnist'
  return config
