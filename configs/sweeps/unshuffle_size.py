"""Figs. 10 / B.4 / B.5: un-shuffling PSNR against model width, full / chans / space, on
CIFAR-10 (depth 16, kernel 7); 2 seeds. Pick another dataset with
--config.base.dataset=mnist (or fashion_mnist) — the configs/unshuffle_*.py recipes differ
only in the dataset and the number of epochs.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/unshuffle_size.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, depth 4, kernel 5, widths 16/32/64, 1 seed, 6 epochs.
"""

from configs import unshuffle_cifar10
from configs import unshuffle_digits
from configs.sweeps import _grid


def get_config(variant=''):
  small = _grid.check_variant(variant, 'unshuffle_size')
  if small:
    base = unshuffle_digits.get_config()
    base.model.depth = 4
    base.num_epochs = 6
    widths, num_seeds = (16, 32, 64), 1
  else:
    base = unshuffle_cifar10.get_config('large')
    widths, num_seeds = (64, 128, 256, 512), 2
  return _grid.make_grid('unshuffle_size', base, [
      [{'model.width': w} for w in widths], _grid.modes(), _grid.seeds(num_seeds)])
