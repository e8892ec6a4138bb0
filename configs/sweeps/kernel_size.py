"""ConvMixers with growing depthwise kernels on CIFAR-10 (width 128, depth 8),
full / chans / space, 3 seeds.

  python -m spatialmix_jax.sweep --config=configs/sweeps/kernel_size.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, width 32, depth 2, kernels 1/3/5/7, 2 seeds, 4 epochs.
"""

from configs import convmixer_cifar10
from configs.sweeps import _grid


def get_config(variant=''):
  small = _grid.check_variant(variant, 'kernel_size')
  base = convmixer_cifar10.get_config()
  kernels = (3, 5, 8, 9, 15)
  if small:
    base = _grid.small_digits(base)
    kernels = (1, 3, 5, 7)
  return _grid.make_grid('kernel_size', base, [
      [{'model.kernel_size': k} for k in kernels], _grid.modes(),
      _grid.seeds(2 if small else 3)])
