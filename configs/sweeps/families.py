"""Fig. 3: families of frozen spatial filters (random, same, box, identity, smooth) in chans
mode, with the full model as the reference, CIFAR-10 ConvMixer, 3 seeds.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/families.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, width 32, depth 2, 2 seeds, 4 epochs.
"""

from configs import convmixer_cifar10
from configs.sweeps import _grid

FAMILIES = ('random', 'same', 'box', 'identity', 'smooth')


def get_config(variant=''):
  small = _grid.check_variant(variant, 'families')
  base = convmixer_cifar10.get_config()
  if small:
    base = _grid.small_digits(base)
  return _grid.make_grid('families', base, [
      [{'model.spatial_init': f} for f in FAMILIES], _grid.modes(('full', 'chans')),
      _grid.seeds(2 if small else 3)])
