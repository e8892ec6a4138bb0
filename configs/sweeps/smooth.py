"""§4.3.3: frozen smoothed random filters (chans mode) of growing Gaussian strength σ, against
plain random filters (σ = 0), clean and adversarial accuracy (FGSM, PGD-2), CIFAR-10
ConvMixer, 3 seeds.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/smooth.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, width 32, depth 2, 2 seeds, 4 epochs, ε up to 16/255.
"""

from configs import convmixer_cifar10
from configs.sweeps import _grid

SIGMAS = (0.5, 1.0, 2.0, 4.0)


def get_config(variant=''):
  small = _grid.check_variant(variant, 'smooth')
  base = convmixer_cifar10.get_config()
  base.mode = 'chans'
  base.eval.attacks = 'fgsm,pgd'
  base.eval.epsilons = '0,0.5,1,2,4,8'
  if small:
    base = _grid.small_digits(base)
    base.eval.epsilons = '0,2,4,8,16'
  strengths = [{'_name': 'sigma-0', 'model.spatial_init': 'random'}] + [
      {'_name': f'sigma-{s:g}', 'model.spatial_init': 'smooth', 'model.smooth_sigma': s}
      for s in SIGMAS]
  return _grid.make_grid('smooth', base, [strengths, _grid.seeds(2 if small else 3)])
