"""Augmentation settings (`config.augment`): what each knob means, and their validation.

The ops themselves run in tf.data, all of them stateless: `image_preprocessing.py` (decode,
crop, flip per example), `randaugment.py` (RandAugment per example) and `batch_mixing.py`
(mixup/cutmix and random erasing per batch). This module needs no TensorFlow, so a config is
checked before any is imported.

Per-example ops (crop, flip, RandAugment) are seeded by `(run seed, example index)`, where the
index counts the examples consumed since step 0; per-batch ops (mixup/cutmix, random erasing)
by `(run seed, global step)`. A resumed run therefore sees exactly the augmented batches an
uninterrupted run would. Every knob lives under `config.augment` (config_schema.py); a zero
turns its part off.

The recipes follow timm (the ConvMixer ImageNet code) and torchvision (the ConvMixer CIFAR-10
code) in the order they apply things: crop -> flip -> RandAugment per example, then
mixup/cutmix over the batch, then random erasing in normalised space (timm's prefetcher).
Images stay in [0, 1] and the models normalise inside, so an erased pixel that timm draws as
z ~ N(0, 1) after normalisation is written here as mean + std * z (it may leave [0, 1]).
"""

from spatialmix_jax.infra.errors import ConfigError

RANDAUGMENT_POLICIES = ('timm', 'torchvision')
ERASING_MODES = ('pixel', 'rand', 'const')
# timm clips magnitudes to _LEVEL_DENOM = 10 (no `mmax`); torchvision has 31 bins, 0..30.
MAX_MAGNITUDE = {'timm': 10.0, 'torchvision': 30.0}

_FIELDS = ('crop_padding', 'flip', 'inception_crop', 'image_size', 'eval_crop_ratio',
           'randaugment_num_ops', 'randaugment_magnitude', 'randaugment_magnitude_std',
           'randaugment_policy', 'mixup_alpha', 'cutmix_alpha', 'mixup_prob',
           'mixup_switch_prob', 'random_erasing', 'random_erasing_mode', 'label_smoothing')

def _require(condition, message):
  if not condition:
    raise ConfigError(message)


def validate(augment, task_class=None):
  """One-line ConfigErrors for `config.augment`, before any data is read."""
  unknown = sorted(set(augment.keys()) - set(_FIELDS))
  _require(not unknown, f'Unknown augment setting(s) {unknown}; valid: {_FIELDS}.')
  a = augment
  for name in ('crop_padding', 'image_size', 'randaugment_num_ops'):
    value = a[name]
    _require(isinstance(value, int) and value >= 0,
             f'augment.{name} must be an integer >= 0, got {value!r}.')
  _require(a.randaugment_policy in RANDAUGMENT_POLICIES,
           f'Unknown augment.randaugment_policy {a.randaugment_policy!r}; choose one of '
           f'{RANDAUGMENT_POLICIES}.')
  top = MAX_MAGNITUDE[a.randaugment_policy]
  _require(0 <= a.randaugment_magnitude <= top,
           f'augment.randaugment_magnitude must be in [0, {top:g}] for the '
           f'{a.randaugment_policy} policy, got {a.randaugment_magnitude}.')
  _require(a.randaugment_magnitude_std >= 0,
           f'augment.randaugment_magnitude_std must be >= 0, got {a.randaugment_magnitude_std}.')
  for name in ('mixup_alpha', 'cutmix_alpha'):
    _require(a[name] >= 0, f'augment.{name} must be >= 0 (0 turns it off), got {a[name]}.')
  for name in ('mixup_prob', 'mixup_switch_prob', 'random_erasing'):
    _require(0 <= a[name] <= 1, f'augment.{name} is a probability in [0, 1], got {a[name]}.')
  _require(a.random_erasing_mode in ERASING_MODES,
           f'Unknown augment.random_erasing_mode {a.random_erasing_mode!r}; choose one of '
           f'{ERASING_MODES}.')
  _require(0 <= a.label_smoothing < 1,
           f'augment.label_smoothing must be in [0, 1), got {a.label_smoothing}.')
  _require(0 < a.eval_crop_ratio <= 1,
           f'augment.eval_crop_ratio must be in (0, 1], got {a.eval_crop_ratio}.')
  _require(task_class is None or task_class.has_labels or not (a.mixup_alpha or a.cutmix_alpha),
           f'mixup/cutmix mix class labels; task {getattr(task_class, "name", "")!r} has none: '
           'set augment.mixup_alpha and augment.cutmix_alpha to 0.')


def has_batch_ops(augment):
  return augment.mixup_alpha > 0 or augment.cutmix_alpha > 0 or augment.random_erasing > 0
