"""Fig. 4: ConvMixers of growing width on CIFAR-10 (depth 8, kernel 8, patch 1),
full / chans / space, 3 seeds.

  python -m spatialmix_jax.sweep --config=configs/sweeps/width.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, depth 2, widths 8/16/32/64, 2 seeds, 4 epochs.
"""

from configs import convmixer_cifar10
from configs.sweeps import _grid


def get_config(variant=''):
  small = _grid.check_variant(variant, 'width')
  base = convmixer_cifar10.get_config()
  widths = (32, 64, 128, 256, 512)
  if small:
    base = _grid.small_digits(base)
    widths = (8, 16, 32, 64)
  return _grid.make_grid('width', base, [
      [{'model.width': w} for w in widths], _grid.modes(), _grid.seeds(2 if small else 3)])
