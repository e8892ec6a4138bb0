"""What every grid config shares: the grid ConfigDict and its `:small` variant switch."""

import ml_collections

VARIANTS = ('', 'small')


def check_variant(variant, grid_name):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of grid {grid_name!r}; choose one of '
                     f'{VARIANTS} (e.g. --config=configs/sweeps/{grid_name}.py:small).')
  return variant == 'small'


def make_grid(name, base, axes):
  grid = ml_collections.ConfigDict()
  grid.name = name
  grid.base = base
  grid.axes = axes
  return grid


def small_digits(base):
  """Shrinks a run config to a tiny ConvMixer/ResNet on the embedded digits (CPU minutes)."""
  base.dataset = 'digits'
  base.data_dir = None
  base.batch_size = 64
  base.eval_batch_size = 120
  base.num_epochs = 4
  base.augment.crop_padding = 0
  base.augment.flip = False
  base.log_every_steps = 20
  base.checkpoint_every_steps = 1000
  if 'convmixer' in base.model.name:
    base.model.width = 32
    base.model.depth = 2
    base.model.kernel_size = 3
    base.model.patch_size = 1
    base.optimizer.name = 'adamw'
    base.optimizer.learning_rate = 0.01
    base.optimizer.weight_decay = 0.01
    base.optimizer.schedule = 'onecycle'
  return base


def seeds(count):
  return [{'seed': s} for s in range(count)]


def modes(names=('full', 'chans', 'space')):
  return [{'mode': m} for m in names]


def convmixer_axis(name, variant, field, values, small_values):
  """The CIFAR-10 ConvMixer recipe over one model field × full/chans/space × 3 seeds;
  `:small` runs `small_values` on the digits with 2 seeds."""
  from configs import convmixer_cifar10  # pylint: disable=g-import-not-at-top
  small = check_variant(variant, name)
  base = convmixer_cifar10.get_config()
  if small:
    base = small_digits(base)
    values = small_values
  return make_grid(name, base, [[{f'model.{field}': v} for v in values], modes(),
                                seeds(2 if small else 3)])
