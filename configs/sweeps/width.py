"""Fig. 4: ConvMixers of growing width on CIFAR-10 (depth 8, kernel 8, patch 1),
full / chans / space, 3 seeds.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/width.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, depth 2, widths 8/16/32/64, 2 seeds, 4 epochs.
"""

from configs.sweeps import _grid


def get_config(variant=''):
  return _grid.convmixer_axis('width', variant, 'width', (32, 64, 128, 256, 512), (8, 16, 32, 64))
