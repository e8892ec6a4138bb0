"""The paper's ImageNet ConvMixer (width 512, kernel 8, patch 7; depth overridable), trained
with the ConvMixer paper's recipe.

Source: locuslab/convmixer README, "these are exactly the settings we used" (ConvMixer-1536/20,
81.37 % top-1; ConvMixer-768/32 "with the above settings but with 300 epochs"), run with the
timm copy in that repository (pytorch-image-models/, 2021):

  sh distributed_train.sh 10 [/path/to/ImageNet1k] --train-split [your_train_dir]
      --val-split [your_val_dir] --model convmixer_1536_20 -b 64 -j 10 --opt adamw
      --epochs 150 --sched onecycle --amp --input-size 3 224 224 --lr 0.01
      --aa rand-m9-mstd0.5-inc1 --cutmix 0.5 --mixup 0.5 --reprob 0.25 --remode pixel
      --num-classes 1000 --warmup-epochs 0 --opt-eps=1e-3 --clip-grad 1.0

Every value that command leaves to that timm's defaults is written out below with the file
it comes from (train.py argparse defaults unless stated).

Where we differ, and why:
* bfloat16 compute instead of torch AMP float16 (no loss scaling needed; variables,
  optimizer state, BatchNorm statistics and the loss stay float32).
* BatchNorm: the original used per-GPU BatchNorm over 64 images (no --sync-bn) and averaged
  the running statistics across GPUs after each epoch (--dist-bn reduce). Here BatchNorm sees
  the whole global batch; `--config.grad_accum_steps=10` on one device gives 64-image
  micro-batches, i.e. per-GPU BatchNorm statistics (see train.accumulate_gradients).
* The random-resized crop is bicubic, where timm draws bilinear or bicubic at random
  (--train-interpolation random); RandAugment's geometric ops are bilinear for the same reason.
* timm mixes the uint8 images in its collate function and rounds them; we mix float images.

  python main.py --config=configs/convmixer_imagenet.py --workdir=gs://BUCKET/cm512 \
      --config.model.depth=12 --config.mode=chans --config.data_dir=DATA_DIR
  python main.py --config=configs/convmixer_imagenet.py:1536_20 ...   # the ConvMixer paper's

Expected (*expected*, not measured here: needs a GPU/TPU slice and prepared imagenet2012):
ConvMixer-1536/20 81.37 % top-1 after 150 epochs (locuslab README, 10 GPUs); the paper's
512/k8/p7 models per its ImageNet table.
"""

from configs import base

PRESETS = {
    '': dict(width=512, depth=12, kernel_size=8, patch_size=7),
    '1536_20': dict(width=1536, depth=20, kernel_size=9, patch_size=7),
    '768_32': dict(width=768, depth=32, kernel_size=7, patch_size=7),
}


def get_config(preset=''):
  if preset not in PRESETS:
    raise ValueError(f'Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.')
  config = base.get_config()
  config.dataset = 'imagenet2012'
  config.mode = 'chans'
  config.model.name = 'convmixer'
  config.model.update(PRESETS[preset])
  # The released ConvMixer-768/32 used ReLU (README: "uses ReLU instead of GELU").
  config.model.act = 'relu' if preset == '768_32' else 'gelu'
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
