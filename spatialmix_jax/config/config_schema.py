"""The config schema: every field with its default, and the ranges the values must lie in.

Each config file under `configs/` starts from `get_config()` (through `configs/base.py`) and
overrides a few fields. Fields are never added elsewhere: `main.py` locks the config, so a
misspelt command-line override such as `--config.mdoe=chans` is an error naming the closest
field instead of being silently ignored. `check_values` turns a value that cannot work into
one line naming the field, the value and what would work; the choices of a component (model
names, augmentations, attacks, ...) are checked by the component that owns them.
"""

import math

import ml_collections

from spatialmix_jax.infra.errors import ConfigError


def get_config():
  config = ml_collections.ConfigDict()

  config.seed = 0
  # A TFDS name (mnist, fashion_mnist, cifar10, cifar100, imagenet2012) or `digits`, the
  # scikit-learn handwritten digits shipped with the package (no download).
  config.dataset = 'digits'
  # None: TFDS's default (~/tensorflow_datasets, or $TFDS_DATA_DIR when set).
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.task = 'classification'  # classification | unshuffle
  # full: learn both mixers; chans: learn only channel mixing (spatial + stem frozen);
  # space: learn only spatial mixing (channel + stem frozen).
  config.mode = 'chans'
  # Explicit comma-separated collection names to freeze; overrides `mode` when set.
  config.frozen_collections = ml_collections.config_dict.placeholder(str)

  config.batch_size = 128  # global, over all devices and processes
  config.eval_batch_size = 256  # global; the last batch is padded and masked
  config.num_epochs = 10
  config.num_train_steps = -1  # > 0 overrides num_epochs; -1 trains num_epochs epochs
  config.grad_accum_steps = 1
  config.dtype = 'float32'  # float32 | bfloat16 (convolutions and activations)

  config.model = ml_collections.ConfigDict()
  config.model.name = 'convmixer'
  config.model.width = 128
  config.model.depth = 4
  config.model.kernel_size = 8
  config.model.patch_size = 1
  config.model.act = 'gelu'
  config.model.depth_multiplier = 1  # separable ResNets use 9 (= k² for k = 3)
  config.model.width_multiplier = 1  # ResNets: scales every stage's width
  # Family of the depthwise (spatial) kernels: random | same | box | identity | smooth.
  config.model.spatial_init = 'random'
  config.model.smooth_sigma = 1.0  # Gaussian low-pass strength of `smooth`, in pixels
  config.model.init_scheme = 'torch'  # torch: U(±1/sqrt(fan_in)) as in PyTorch; flax: lecun normal
  config.model.depthwise_impl = 'auto'  # auto | xla | shift | fft | native | pallas

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adamw'  # adamw | sgd
  config.optimizer.learning_rate = 0.01  # peak
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 0.01
  config.optimizer.grad_clip_norm = 0.0  # 0 disables clipping
  # False: biases and norm parameters (the 1-D weights) get no weight decay, as in timm.
  config.optimizer.decay_biases_and_norms = False
  # warmup_cosine | onecycle (torch OneCycleLR, cosine) | piecewise_onecycle
  # (0 → peak at 2/5 → peak/20 at 4/5 → 0: the ConvMixer CIFAR script's schedule, and what
  # `--sched onecycle` means in the ConvMixer ImageNet repo's timm copy) | constant
  config.optimizer.schedule = 'warmup_cosine'
  config.optimizer.warmup_epochs = 0.0
  config.optimizer.onecycle_pct_start = 0.3
  config.optimizer.onecycle_div_factor = 25.0
  config.optimizer.onecycle_final_div_factor = 1e4

  config.augment = ml_collections.ConfigDict()
  config.augment.crop_padding = 0  # CIFAR: pad-4 random crop
  config.augment.flip = False
  config.augment.inception_crop = False  # ImageNet train
  config.augment.image_size = 0  # ImageNet train/eval resolution; 0 keeps the native size
  config.augment.eval_crop_ratio = 0.875
  config.augment.randaugment_num_ops = 0  # ops per image; 0 turns RandAugment off
  # timm: timm's `rand-mM-mstdS-inc1` (levels 0..10, each op applied with p 0.5, fill = mean);
  # torchvision: transforms.RandAugment (levels 0..30 of 31 bins, always applied, fill 0).
  config.augment.randaugment_policy = 'timm'
  config.augment.randaugment_magnitude = 0.0
  config.augment.randaugment_magnitude_std = 0.0  # timm's `mstd`: per-op N(m, std) level
  config.augment.mixup_alpha = 0.0  # Beta(alpha, alpha); 0 turns mixup off
  config.augment.cutmix_alpha = 0.0  # 0 turns cutmix off
  config.augment.mixup_prob = 1.0  # timm --mixup-prob: chance a batch is mixed at all
  config.augment.mixup_switch_prob = 0.5  # chance of cutmix rather than mixup when both on
  config.augment.random_erasing = 0.0  # timm --reprob, per image
  config.augment.random_erasing_mode = 'pixel'  # pixel | rand | const (timm --remode)
  config.augment.label_smoothing = 0.0

  config.input = ml_collections.ConfigDict()
  config.input.shuffle_buffer = 50_000
  config.input.cache = True  # keep decoded examples in host memory (small datasets)
  config.input.prefetch = 2

  config.log_every_steps = 50
  # > 0: also evaluate every this many steps, each evaluation recorded in WORKDIR/curve.json
  # (the budget curves of a longer run); 0: evaluate only at the end.
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.eval_step = -1  # --job=eval restores this step; -1: the latest
  # A workdir whose latest checkpoint's weights and BatchNorm statistics start this run (at
  # step 0, fresh optimizer state, any mode); ignored once this run has its own checkpoint.
  config.init_from = ml_collections.config_dict.placeholder(str)

  config.eval = ml_collections.ConfigDict()
  # Comma-separated: fgsm, pgd (as pgd_* say), pgd20 (random start, 2.5ε/20), apgd (APGD-CE).
  config.eval.attacks = ''
  config.eval.epsilons = '0,0.5,1,2,4,8'  # in units of 1/255
  config.eval.pgd_steps = 2
  # paper: eq. 4 iterated, step ε, from the clean image; madry: random start, step 2.5ε/steps.
  config.eval.pgd_variant = 'paper'
  config.eval.pgd_step_size = 0.0  # in 1/255; 0: the variant's step
  config.eval.max_examples = -1  # -1: the whole test split
  # With eval_every_steps > 0: attack every evaluation along training too (eval.attacks at
  # eval.epsilons on eval.max_examples images), into curve.json beside the clean metrics.
  config.eval.attacks_along_training = False
  config.eval.apgd_steps = 100  # APGD-CE iterations (the authors' default)
  # A trained run's workdir: craft the attacks on its model, classify them with this one.
  config.eval.transfer_from = ml_collections.config_dict.placeholder(str)

  config.adversarial_training = ml_collections.ConfigDict()
  config.adversarial_training.enabled = False
  config.adversarial_training.epsilon = 1.0  # in units of 1/255; FGSM, the paper's defence

  config.unshuffle = ml_collections.ConfigDict()
  config.unshuffle.permutation_seed = 0

  return config


def _at_least(minimum):
  return (lambda v: v >= minimum), f'>= {minimum}'


def _above(bound):
  return (lambda v: v > bound), f'> {bound}'


def _within(low, high):  # [low, high)
  return (lambda v: low <= v < high), f'in [{low}, {high})'


# (dotted field, integers only, (predicate, what would work)). num_train_steps and num_epochs
# depend on each other and are checked in `check_values` itself.
_RANGES = (
    ('seed', True, _at_least(0)),
    ('batch_size', True, _at_least(1)),
    ('eval_batch_size', True, _at_least(1)),
    ('grad_accum_steps', True, _at_least(1)),
    ('log_every_steps', True, _at_least(1)),
    ('eval_every_steps', True, ((lambda v: v >= 0), '>= 0 (0: evaluate only at the end)')),
    ('checkpoint_every_steps', True, _at_least(1)),
    ('keep_checkpoints', True, _at_least(1)),
    ('eval_step', True, ((lambda v: v >= -1), '>= 0, or -1 for the latest checkpoint')),
    ('optimizer.learning_rate', False, _above(0)),
    ('optimizer.b1', False, _within(0, 1)),
    ('optimizer.b2', False, _within(0, 1)),
    ('optimizer.eps', False, _above(0)),
    ('optimizer.momentum', False, _within(0, 1)),
    ('optimizer.weight_decay', False, _at_least(0)),
    ('optimizer.grad_clip_norm', False, ((lambda v: v >= 0), '>= 0 (0 turns clipping off)')),
    ('optimizer.warmup_epochs', False, _at_least(0)),
    ('optimizer.onecycle_pct_start', False, ((lambda v: 0 < v < 1), 'in (0, 1)')),
    ('optimizer.onecycle_div_factor', False, _above(0)),
    ('optimizer.onecycle_final_div_factor', False, _above(0)),
    ('input.shuffle_buffer', True, _at_least(1)),
    ('input.prefetch', True, _at_least(0)),
    ('eval.max_examples', True, ((lambda v: v == -1 or v >= 1),
                                 '>= 1, or -1 for the whole test split')),
    ('eval.pgd_steps', True, _at_least(1)),
    ('eval.pgd_step_size', False, ((lambda v: v >= 0), """>= 0 (0: the variant's step)""")),
    ('eval.apgd_steps', True, _at_least(1)),
    ('unshuffle.permutation_seed', True, _at_least(0)),
)


def _leaves(config, prefix=''):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


def _get(config, dotted):
  for part in dotted.split('.'):
    config = config[part]
  return config


def check_values(config):
  """Raises a one-line ConfigError for the first field whose value cannot work."""
  for name, value in _leaves(config):
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f'{name} is {value}; give a finite number.')
  for name, integer, (ok, wanted) in _RANGES:
    value = _get(config, name)
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    if (integer and not is_integer) or not ok(value):
      kind = 'an integer ' if integer else ''
      raise ConfigError(f'{name} must be {kind}{wanted}, got {value!r}.')
  steps, epochs = config.num_train_steps, config.num_epochs
  if not isinstance(steps, int) or not (steps == -1 or steps >= 1):
    raise ConfigError(f'num_train_steps must be an integer >= 1, or -1 to train num_epochs '
                      f'epochs, got {steps!r}.')
  if steps == -1 and (not isinstance(epochs, int) or epochs < 1):
    raise ConfigError(f'num_epochs must be an integer >= 1 when num_train_steps is -1, got '
                      f'{epochs!r}; or set num_train_steps.')
