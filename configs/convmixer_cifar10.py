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

from spatialmix_jax.config import recipes


def get_config():
  return recipes.convmixer_cifar10()
