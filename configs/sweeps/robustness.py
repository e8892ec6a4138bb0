"""Figs. 6/7: accuracy under FGSM and PGD-2 for ε = 0…8/255, full / chans / space, with and
without FGSM adversarial training (ε = 1/255 during training), CIFAR-10 ConvMixer, 3 seeds.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/robustness.py --workdir=DIR \
      --config.base.data_dir=../shared/tensorflow_datasets
  :small — digits, width 32, depth 2, 2 seeds, 4 epochs; ε up to 16/255 (8×8 digits are
  hard to move at 1/255).
"""

from configs import convmixer_cifar10
from configs.sweeps import _grid


def get_config(variant=''):
  small = _grid.check_variant(variant, 'robustness')
  base = convmixer_cifar10.get_config()
  base.eval.attacks = 'fgsm,pgd'
  base.eval.epsilons = '0,0.5,1,2,4,8'
  base.adversarial_training.epsilon = 1.0
  if small:
    base = _grid.small_digits(base)
    base.eval.epsilons = '0,2,4,8,16'
    base.adversarial_training.epsilon = 4.0
  return _grid.make_grid('robustness', base, [
      _grid.modes(),
      [{'_name': 'clean', 'adversarial_training.enabled': False},
       {'_name': 'fgsm_at', 'adversarial_training.enabled': True}],
      _grid.seeds(2 if small else 3)])
