"""Fig. 5: ConvMixers of growing depth on CIFAR-10 (width 128, kernel 8, patch 1),
full / chans / space, 3 seeds.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/convmixer_depth.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, width 32, depths 1/2/4/8, 2 seeds, 4 epochs.
"""

from configs.sweeps import _grid


def get_config(variant=''):
  return _grid.convmixer_axis('convmixer_depth', variant, 'depth', (2, 4, 8, 16, 32), (1, 2, 4, 8))
