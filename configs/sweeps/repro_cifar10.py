"""The CPU-budget reproduction on real CIFAR-10 (docs/reproduction.md): one grid per claim.

Every cell is a ConvMixer-128/4 (kernel 5, patch 2) or a separable ResNet-14 (d = 9) trained
for 300 steps at batch 128 (0.77 epochs) with flip only, float32: a few minutes per cell on
2 CPU cores. Pick the grid with the variant:

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/repro_cifar10.py:convmixer_modes \
      --workdir=/tmp/repro/convmixer_modes --config.base.data_dir=../shared/tensorflow_datasets

  convmixer_modes  full / chans / space × 2 seeds, with FGSM and PGD-2 at ε = 0…4/255
  resnet_modes     full / chans / space × 2 seeds
  families         chans with same / box / identity frozen filters (random: convmixer_modes)
  smooth           Fig. 7: chans with smoothed random filters (σ = 1, 2 px) × 2 seeds, attacked
                   like above
  robustness_long  full / chans / chans with σ = 1 smoothed filters at 4 epochs (1,560 steps),
                   attacked like above: does the robustness ordering depend on the budget?
  adversarial      full / chans trained on FGSM images (ε = 1/255), attacked like above
  unshuffle        pixel un-shuffling of CIFAR-10, full / chans
  unshuffle_digits pixel un-shuffling of the embedded digits (configs/unshuffle_digits.py),
                   full / chans × 3 seeds (needs no data_dir)
"""

from configs import convmixer_cifar10
from configs import resnet_cifar10
from configs import unshuffle_cifar10
from configs import unshuffle_digits
from configs.sweeps import _grid

VARIANTS = ('convmixer_modes', 'resnet_modes', 'families', 'smooth', 'robustness_long',
            'adversarial', 'unshuffle', 'unshuffle_digits')


def _cpu_budget(config):
  config.dtype = 'float32'
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_train_steps = 300
  config.log_every_steps = 50
  config.checkpoint_every_steps = 100
  config.augment.randaugment_num_ops = 0
  config.augment.crop_padding = 0
  config.augment.flip = True
  return config


def _convmixer():
  config = _cpu_budget(convmixer_cifar10.get_config())
  config.model.width = 128
  config.model.depth = 4
  config.model.kernel_size = 5
  config.model.patch_size = 2
  config.eval.attacks = 'fgsm,pgd'
  config.eval.epsilons = '0,0.5,1,2,4'
  config.eval.max_examples = 2000
  # These records were attacked with Madry's PGD (random start, steps of 2.5ε/k), the default
  # of the time; the paper's own PGD is paper_cifar10.py's.
  config.eval.pgd_variant = 'madry'
  return config


def get_config(variant=''):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of grid repro_cifar10; choose one of '
                     f'{VARIANTS} (e.g. --config=configs/sweeps/repro_cifar10.py:resnet_modes).')
  if variant == 'convmixer_modes':
    return _grid.make_grid(variant, _convmixer(), [_grid.modes(), _grid.seeds(2)])
  if variant == 'resnet_modes':
    base = _cpu_budget(resnet_cifar10.get_config())
    base.model.depth = 14
    base.optimizer.learning_rate = 0.05
    return _grid.make_grid(variant, base, [_grid.modes(), _grid.seeds(2)])
  if variant == 'families':
    return _grid.make_grid(variant, _convmixer(), [
        [{'model.spatial_init': f} for f in ('same', 'box', 'identity')], _grid.modes(('chans',)),
        _grid.seeds(1)])
  if variant == 'smooth':
    base = _convmixer()
    base.model.spatial_init = 'smooth'
    return _grid.make_grid(variant, base, [
        [{'model.smooth_sigma': s} for s in (1.0, 2.0)], _grid.modes(('chans',)),
        _grid.seeds(2)])
  if variant == 'robustness_long':
    base = _convmixer()
    base.num_train_steps = 1560
    base.checkpoint_every_steps = 260
    smoothed = {'_name': 'mode-chans.smooth-1', 'mode': 'chans', 'model.spatial_init': 'smooth',
                'model.smooth_sigma': 1.0}
    return _grid.make_grid(variant, base, [[{'mode': 'full'}, {'mode': 'chans'}, smoothed],
                                           _grid.seeds(1)])
  if variant == 'adversarial':
    base = _convmixer()
    base.adversarial_training.enabled = True
    base.adversarial_training.epsilon = 1.0
    return _grid.make_grid(variant, base, [_grid.modes(('full', 'chans')), _grid.seeds(1)])
  if variant == 'unshuffle_digits':
    return _grid.make_grid(variant, unshuffle_digits.get_config(),
                           [_grid.modes(('full', 'chans')), _grid.seeds(3)])
  base = _cpu_budget(unshuffle_cifar10.get_config())
  base.model.width = 128
  base.model.depth = 4
  base.model.kernel_size = 9
  base.augment.flip = False
  return _grid.make_grid(variant, base, [_grid.modes(('full', 'chans')), _grid.seeds(1)])
