"""ConvMixers with growing depthwise kernels on CIFAR-10 (width 128, depth 8),
full / chans / space, 3 seeds.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/kernel_size.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, width 32, depth 2, kernels 1/3/5/7, 2 seeds, 4 epochs.
"""

from configs.sweeps import _grid


def get_config(variant=''):
  return _grid.convmixer_axis('kernel_size', variant, 'kernel_size', (3, 5, 8, 9, 15), (1, 3, 5, 7))
