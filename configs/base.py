"""Shared base of every config: the full schema with every recipe default written out.

Each config file under `configs/` imports `get_config()` from here and overrides a few fields.
Fields are never added elsewhere: `main.py` locks the config, so a misspelt command-line
override such as `--config.mdoe=chans` fails at once instead of being silently ignored.
"""

import ml_collections


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
  config.num_train_steps = -1  # > 0 overrides num_epochs
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
  config.model.init = 'torch'  # torch: U(±1/sqrt(fan_in)) as in PyTorch; flax: lecun normal
  config.model.depthwise_impl = 'auto'  # auto | xla | shift | fft

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
  config.eval_every_steps = 0  # 0: evaluate only at the end
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.eval_step = -1  # --mode=eval restores this step; -1: the latest
  # A workdir whose latest checkpoint's weights and BatchNorm statistics start this run (at
  # step 0, fresh optimizer state, any mode); ignored once this run has its own checkpoint.
  config.init_from = ml_collections.config_dict.placeholder(str)

  config.eval = ml_collections.ConfigDict()
  config.eval.attacks = ''  # comma-separated: fgsm, pgd
  config.eval.epsilons = '0,0.5,1,2,4,8'  # in units of 1/255
  config.eval.pgd_steps = 2
  config.eval.pgd_step_size = 0.0  # 0: 2.5 * epsilon / steps
  config.eval.pgd_random_start = True
  config.eval.max_examples = -1  # -1: the whole test split

  config.adversarial_training = ml_collections.ConfigDict()
  config.adversarial_training.enabled = False
  config.adversarial_training.epsilon = 1.0  # in units of 1/255; FGSM, the paper's defence

  config.unshuffle = ml_collections.ConfigDict()
  config.unshuffle.permutation_seed = 0

  return config
