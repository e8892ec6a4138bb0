"""Fig. 2: separable ResNets of growing depth on CIFAR-10, full / chans / space, 3 seeds.

The non-separable reference (model.name=resnet_cifar) has no spatial/channel split, so it is
a separate one-axis run: --config.base.model.name=resnet_cifar with the mode axis ignored
is not meaningful; train it with main.py and configs/resnet_cifar10.py instead.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/resnet_depth.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, depths 8/14/20, 2 seeds, 4 epochs (well under an hour on 2 CPU cores).
"""

from configs import resnet_cifar10
from configs.sweeps import _grid


def get_config(variant=''):
  small = _grid.check_variant(variant, 'resnet_depth')
  base = resnet_cifar10.get_config()
  depths = (8, 14, 20, 32, 44, 56, 110)
  if small:
    base = _grid.small_digits(base)
    base.optimizer.learning_rate = 0.05
    depths = (8, 14, 20)
  depth_axis = [{'model.depth': d} for d in depths]
  return _grid.make_grid('resnet_depth', base,
                         [depth_axis, _grid.modes(), _grid.seeds(2 if small else 3)])
