"""full / chans / space ConvMixers on the embedded digits, 2 seeds: minutes on a CPU.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/modes_digits.py --workdir=/tmp/sw_modes
  python -m spatialmix_jax.study.report --workdir=/tmp/sw_modes
"""

from configs import default
from configs.sweeps import _grid


def get_config(variant=''):
  small = _grid.check_variant(variant, 'modes_digits')
  base = default.get_config()
  base.num_epochs = 4 if small else 10
  return _grid.make_grid('modes_digits', base, [_grid.modes(), _grid.seeds(2)])
