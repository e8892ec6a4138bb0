"""Fig. 5: ConvMixers of growing depth on CIFAR-10 (width 128, kernel 8, patch 1),
full / chans / space, 3 seeds.

  python -m spatialmix_jax.sweep --config=configs/sweeps/convmixer_depth.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, width 32, depths 1/2/4/8, 2 seeds, 4 epochs.
"""

from configs import convmixer_cifar10
from configs.sweeps import _grid


def get_config(variant=''):
  small = _grid.check_variant(variant, 'convmixer_depth')
  base = convmixer_cifar10.get_config()
  depths = (2, 4, 8, 16, 32)
  if small:
    base = _grid.small_digits(base)
    depths = (1, 2, 4, 8)
  return _grid.make_grid('convmixer_depth', base, [
      [{'model.depth': d} for d in depths], _grid.modes(), _grid.seeds(2 if small else 3)])
