"""The paper's figures on its own architectures, at a CPU budget, on real CIFAR-10 (and the
embedded digits for un-shuffling): one grid per figure, each one resumable sweep command.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/paper_cifar10.py:fig6_modes \
      --workdir=docs/results/paper_cifar10/fig6_modes \
      --config.base.data_dir=../shared/tensorflow_datasets

  fig6_modes        Fig. 6 (and Fig. 2's Full/Chans/Space): separable pre-activation ResNet-8
                    (CIFAR form 6n+2 with n = 1, d = 9), full / chans / space × 5 seeds,
                    4 epochs; clean accuracy, then FGSM and PGD-2 (the paper's PGD) at
                    ε = 0…4/255.
  fig6_adversarial  Fig. 6: the same three modes trained on FGSM images (ε = 1/255), attacked
                    the same way.
  fig3_families     Fig. 3: the same ResNet in chans with "same", box and identity frozen
                    filters × 5 seeds (random filters and the full model: fig6_modes).
  fig4_width        Fig. 4: separable ResNet-8 (d = 9), width multiplier 1 / 2 / 4, full and
                    chans × 2 seeds, 2 epochs.
  fig10_kernel      Fig. 10: un-shuffling the digits with a ConvMixer (width 64, depth 4) of
  fig10_depth       kernel 1 / 3 / 5 / 7, of depth 1 / 2 / 4 / 8 (kernel 5), of width
  fig10_width       16 / 32 / 64 / 128 (depth 4, kernel 5); full and chans × 3 seeds, 20 epochs.
  fig5_convmixer    Fig. 5: the paper's CIFAR ConvMixer (width 128, kernel 8, patch 1) at depth 4
                    (one point of the figure's depth axis), full / chans / space × 5 seeds
                    (Fig. 5's modes are a headline claim; seeds 0-2 first:
                    --cells=mode-full.seed-0,...), 1 epoch, attacked like fig6_modes (Fig. 6's
                    question on a ConvMixer).
  fig7_smooth       Fig. 7: that ConvMixer in chans with smoothed frozen filters (σ = 1, 2 px)
                    × 3 seeds (plain filters: fig5_convmixer's chans cells), attacked the same.
  budget_curve      How the Fig. 2 and Fig. 6 gaps move with training length: the fig6_modes
                    ResNet-8 in full and chans × 3 seeds for 16 epochs (4× fig6_modes),
                    evaluated clean and under FGSM / PGD-2 at ε = 1/255 every 2 epochs
                    (curve.json: checkpoints of one 16-epoch schedule, not 2-, 4-, ... epoch
                    schedules).

Budget: SGD (momentum 0.9, lr 0.1, weight decay 5e-4, cosine, no warm-up) at batch 128 with
pad-4 crops and flips, float32; 390 steps per epoch. The smallest CIFAR ResNet (n = 1) keeps a
cell at about 10 minutes on 2 CPU cores (ResNet-14 would double that; width ×4 took 3.5×).
Fig. 7 (smoothed frozen filters) is a ConvMixer experiment in the paper as here:
configs/sweeps/repro_cifar10.py:smooth.

Reached on a 2-core Xeon (docs/reproduction.md has every number): fig6_modes, 2 seeds, ~11 min
a cell: full 0.677, chans 0.678, space 0.577 clean; at ε = 1/255 FGSM full 0.385, chans 0.407,
PGD-2 full 0.374, chans 0.396. fig3_families (chans, 2 seeds): same 0.670, box 0.397,
identity 0.393. fig6_adversarial, 2 seeds, ~16 min a cell: clean full 0.645, chans 0.633,
space 0.491; at ε = 1/255 FGSM full 0.559, chans 0.543, space 0.425, PGD-2 full 0.559,
chans 0.541. fig4_width (2 seeds at ×1 and ×2, seed 0 at ×4), 6–10 / 11–17 / 32–33 min a cell
at ×1 / ×2 / ×4: full 0.618 / 0.650 / 0.664, chans 0.609 / 0.637 / 0.655.
"""

from configs import convmixer_cifar10
from configs import resnet_cifar10
from configs import unshuffle_digits
from configs.sweeps import _grid

VARIANTS = ('fig6_modes', 'fig6_adversarial', 'fig3_families', 'fig4_width', 'fig10_kernel',
            'fig10_depth', 'fig10_width', 'fig5_convmixer', 'fig7_smooth', 'budget_curve')
ATTACKED_EXAMPLES = 2000  # test images under attack (clean accuracy: all 10,000)


def _resnet(depth, epochs):
  config = resnet_cifar10.get_config()
  config.dtype = 'float32'
  config.model.depth = depth
  config.num_epochs = epochs
  config.batch_size = 128
  config.eval_batch_size = 500
  config.optimizer.learning_rate = 0.1
  config.optimizer.warmup_epochs = 0.0
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.log_every_steps = 130
  config.checkpoint_every_steps = 390
  return config


def _attacked(config):
  config.eval.attacks = 'fgsm,pgd'
  config.eval.epsilons = '0,0.5,1,2,4'
  config.eval.pgd_steps = 2
  config.eval.pgd_variant = 'paper'
  config.eval.max_examples = ATTACKED_EXAMPLES
  return config


def _convmixer():
  """The paper's CIFAR ConvMixer with the CIFAR ConvMixer recipe (AdamW, one-cycle), cut to a
  CPU budget: one epoch at batch 128, flips only (RandAugment needs a longer run), float32."""
  config = convmixer_cifar10.get_config()
  config.model.depth = 4
  config.dtype = 'float32'
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = 1
  config.augment.randaugment_num_ops = 0
  config.log_every_steps = 130
  config.checkpoint_every_steps = 130
  return _attacked(config)


def _unshuffle():
  config = unshuffle_digits.get_config()
  config.model.width = 64
  config.model.depth = 4
  config.model.kernel_size = 5
  return config


def get_config(variant=''):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of grid paper_cifar10; choose one of '
                     f'{VARIANTS} (e.g. --config=configs/sweeps/paper_cifar10.py:fig6_modes).')
  if variant.startswith('fig10_'):
    field = variant[len('fig10_'):]
    values = {'kernel': (1, 3, 5, 7), 'depth': (1, 2, 4, 8), 'width': (16, 32, 64, 128)}[field]
    name = {'kernel': 'kernel_size'}.get(field, field)
    return _grid.make_grid(variant, _unshuffle(), [
        [{f'model.{name}': v} for v in values], _grid.modes(('full', 'chans')),
        _grid.seeds(3)])
  if variant == 'fig5_convmixer':
    return _grid.make_grid(variant, _convmixer(), [_grid.modes(), _grid.seeds(5)])
  if variant == 'fig7_smooth':
    base = _convmixer()
    base.model.spatial_init = 'smooth'
    return _grid.make_grid(variant, base, [
        [{'model.smooth_sigma': s} for s in (1.0, 2.0)], _grid.modes(('chans',)),
        _grid.seeds(3)])
  if variant == 'budget_curve':
    base = _attacked(_resnet(depth=8, epochs=16))
    base.eval.epsilons = '1'
    base.eval_every_steps = 780  # every 2 epochs
    base.eval.attacks_along_training = True
    return _grid.make_grid(variant, base, [_grid.modes(('full', 'chans')), _grid.seeds(3)])
  if variant == 'fig4_width':
    return _grid.make_grid(variant, _resnet(depth=8, epochs=2), [
        [{'model.width_multiplier': m} for m in (1, 2, 4)], _grid.modes(('full', 'chans')),
        _grid.seeds(2)])
  base = _resnet(depth=8, epochs=4)
  if variant == 'fig3_families':
    return _grid.make_grid(variant, base, [
        [{'model.spatial_init': f} for f in ('same', 'box', 'identity')],
        _grid.modes(('chans',)), _grid.seeds(5)])
  base = _attacked(base)
  base.adversarial_training.enabled = variant == 'fig6_adversarial'
  base.adversarial_training.epsilon = 1.0
  # Fig. 6's plain cells are the headline: 5 seeds; the FGSM-trained ones 2 so far.
  return _grid.make_grid(variant, base, [
      _grid.modes(), _grid.seeds(5 if variant == 'fig6_modes' else 2)])
