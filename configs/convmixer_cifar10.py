"""The paper's CIFAR-10 ConvMixer: width 128, kernel 8, patch 1 (depth 8 by default), trained
with the ConvMixer CIFAR-10 recipe.

Source: locuslab/convmixer-cifar10 (README command and train.py defaults; see
configs/convmixer_cifar10_256_8.py for the full list and where we differ):

  python train.py --lr-max=0.05 --ra-n=2 --ra-m=12 --wd=0.005 --scale=1.0 --jitter=0 --reprob=0

i.e. AdamW lr 0.05 (betas 0.9/0.999, eps 1e-8), weight decay 0.005 on every parameter,
batch 512, 25 epochs, piecewise-linear one-cycle (0 → 0.05 at 2/5 → 0.0025 at 4/5 → 0,
read at the end of each update), flip + torchvision RandAugment(2 ops, magnitude 12), no
crop/jitter/erasing/mixup/label smoothing/clipping, mixed precision. The paper states only
the architecture; the depth is our assumption (ConvMixer-256/8's).

  python main.py --config=configs/convmixer_cifar10.py --workdir=/tmp/spatialmix/cm_cifar \
      --config.mode=chans --config.data_dir=../shared/tensorflow_datasets

Expected (*expected*, not yet measured here): the paper's Fig. 5 regime, chans within a few
points of full. On CPU add --config.dtype=float32.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.dataset = 'cifar10'
  config.mode = 'chans'
  config.model.name = 'convmixer'
  config.model.width = 128
  config.model.depth = 8
  config.model.kernel_size = 8
  config.model.patch_size = 1
  config.model.act = 'gelu'
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
