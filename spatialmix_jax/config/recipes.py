"""The training recipes the package itself needs at run time: PyTorch weight import writes the
dataset's recipe into the imported run's config.json, also when the package is installed
without this repository. `configs/convmixer_imagenet.py`, `configs/convmixer_cifar10.py` and
`configs/default.py` return them; their docstrings carry the commands, the sources and the
results.
"""

from spatialmix_jax.config import config_schema
from spatialmix_jax.infra.errors import ConfigError
from spatialmix_jax.modeling import presets

# Variant of the ImageNet recipe: the preset of modeling/presets.py it trains.
IMAGENET_PRESETS = {
    '': 'spatialmix_imagenet',  # width 512, kernel 8, patch 7; depth 12 is an assumption
    '1536_20': 'convmixer_1536_20',
    '768_32': 'convmixer_768_32',
}


def digits():
  """configs/default.py: a ConvMixer in chans mode on the embedded digits."""
  config = config_schema.get_config()
  config.dataset = 'digits'
  config.mode = 'chans'
  config.model.name = 'convmixer'
  config.model.width = 64
  config.model.depth = 4
  config.model.kernel_size = 3
  config.model.patch_size = 1
  config.batch_size = 64
  config.eval_batch_size = 128
  config.num_epochs = 15
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.01
  config.optimizer.weight_decay = 0.01
  config.optimizer.schedule = 'onecycle'
  config.log_every_steps = 20
  config.checkpoint_every_steps = 100
  return config


def convmixer_cifar10():
  """configs/convmixer_cifar10.py: locuslab/convmixer-cifar10's recipe with the paper's
  CIFAR ConvMixer."""
  config = config_schema.get_config()
  config.dataset = 'cifar10'
  config.mode = 'chans'
  config.model.act = 'gelu'
  # width 128, kernel 8, patch 1 (the paper's); depth 8 (our assumption)
  config.model.update(presets.model_fields('spatialmix_cifar'))
  config.model.init_scheme = 'torch'
  config.dtype = 'bfloat16'  # torch.cuda.amp autocast
  config.batch_size = 512
  config.grad_accum_steps = 1
  config.eval_batch_size = 1000
  config.num_epochs = 25

  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.05  # --lr-max
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.005  # --wd
  config.optimizer.decay_biases_and_norms = True  # optim.AdamW(model.parameters(), ...)
  config.optimizer.grad_clip_norm = 0.0  # --clip-norm not given
  config.optimizer.schedule = 'piecewise_onecycle'
  config.optimizer.warmup_epochs = 0.0

  config.augment.crop_padding = 0  # RandomResizedCrop at --scale=1.0: the identity
  config.augment.inception_crop = False
  config.augment.flip = True
  config.augment.randaugment_policy = 'torchvision'
  config.augment.randaugment_num_ops = 2  # --ra-n
  config.augment.randaugment_magnitude = 12.0  # --ra-m (of 31 bins)
  config.augment.randaugment_magnitude_std = 0.0
  config.augment.mixup_alpha = 0.0
  config.augment.cutmix_alpha = 0.0
  config.augment.random_erasing = 0.0  # --reprob=0
  config.augment.label_smoothing = 0.0

  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  return config


def convmixer_imagenet(preset=''):
  """configs/convmixer_imagenet.py: the ConvMixer paper's timm command (its docstring has the
  command, the sources and where we differ)."""
  if preset not in IMAGENET_PRESETS:
    raise ConfigError(f'Unknown preset {preset!r}; choose one of {sorted(IMAGENET_PRESETS)}.')
  config = config_schema.get_config()
  config.dataset = 'imagenet2012'
  config.mode = 'chans'
  # The released ConvMixer-768/32 used ReLU (README: "uses ReLU instead of GELU"); the preset
  # says so.
  config.model.act = 'gelu'
  config.model.update(presets.model_fields(IMAGENET_PRESETS[preset]))
  config.model.init_scheme = 'torch'  # PyTorch's default Conv2d/Linear init (no custom init)
  config.dtype = 'bfloat16'  # --amp
  config.batch_size = 640  # -b 64 on each of 10 GPUs
  config.grad_accum_steps = 1
  config.eval_batch_size = 1024
  config.num_epochs = 300 if preset == '768_32' else 150  # --epochs (no cooldown for onecycle)

  config.optimizer.name = 'adamw'  # --opt adamw: torch.optim.AdamW
  config.optimizer.learning_rate = 0.01  # --lr
  config.optimizer.eps = 1e-3  # --opt-eps
  config.optimizer.b1 = 0.9  # --opt-betas unset: torch AdamW's (0.9, 0.999)
  config.optimizer.b2 = 0.999
  config.optimizer.weight_decay = 2e-5  # --weight-decay default
  # optim_factory.create_optimizer_v2(filter_bias_and_bn=True): 1-D params and biases get no
  # weight decay.
  config.optimizer.decay_biases_and_norms = False
  config.optimizer.grad_clip_norm = 1.0  # --clip-grad 1.0, --clip-mode norm (global L2 norm)
  # --sched onecycle in that timm copy is timm/scheduler/onecycle_lr.py: np.interp over epochs
  # [0, T*2//5, T*4//5, T] -> [0, lr, lr/20, 0], stepped every update at
  # epoch + (i + 1) / len(loader); --warmup-epochs 0 (the schedule asserts it).
  config.optimizer.schedule = 'piecewise_onecycle'
  config.optimizer.warmup_epochs = 0.0

  config.augment.image_size = 224  # --input-size 3 224 224
  # RandomResizedCropAndInterpolation: --scale 0.08 1.0, --ratio 3/4 4/3 (defaults).
  config.augment.inception_crop = True
  config.augment.flip = True  # --hflip 0.5 (default); --vflip 0
  config.augment.crop_padding = 0
  # --color-jitter 0.4 is ignored when --aa is set (transforms_factory: jitter only without AA).
  # --aa rand-m9-mstd0.5-inc1: 2 ops (timm's default n), magnitude 9, std 0.5, increasing ops,
  # each op applied with p 0.5, fill = ImageNet mean (auto_augment.py, transforms_factory.py).
  config.augment.randaugment_policy = 'timm'
  config.augment.randaugment_num_ops = 2
  config.augment.randaugment_magnitude = 9.0
  config.augment.randaugment_magnitude_std = 0.5
  config.augment.mixup_alpha = 0.5  # --mixup
  config.augment.cutmix_alpha = 0.5  # --cutmix (--cutmix-minmax unset)
  config.augment.mixup_prob = 1.0  # --mixup-prob default
  config.augment.mixup_switch_prob = 0.5  # --mixup-switch-prob default; --mixup-mode batch
  config.augment.label_smoothing = 0.1  # --smoothing default, applied to the mixed targets
  config.augment.random_erasing = 0.25  # --reprob; --recount 1, area 0.02-1/3, aspect 0.3-3.3
  config.augment.random_erasing_mode = 'pixel'  # --remode pixel
  # Eval: resize the short side to 224 / crop_pct, bicubic, centre crop 224, with crop_pct
  # 0.96 from timm/models/convmixer.py's default_cfg (not timm's 0.875 default).
  config.augment.eval_crop_ratio = 0.96

  config.input.cache = False
  config.input.shuffle_buffer = 16_384
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  return config
