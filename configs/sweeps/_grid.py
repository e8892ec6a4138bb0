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
