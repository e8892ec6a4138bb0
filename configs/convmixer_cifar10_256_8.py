"""ConvMixer-256/8 (kernel 5, patch 2) on CIFAR-10: the locuslab/convmixer-cifar10 result.

Source: locuslab/convmixer-cifar10 README and train.py ("around 92.5% accuracy in just 25
epochs"; its log ends at 92.60 % test accuracy on a 2080Ti):

  python train.py --lr-max=0.05 --ra-n=2 --ra-m=12 --wd=0.005 --scale=1.0 --jitter=0 --reprob=0

Every value below is that command or a train.py default:
  --batch-size 512, --epochs 25, --hdim 256 --depth 8 --conv-ks 5 --psize 2; optim.AdamW over
  model.parameters() (so biases and BatchNorm weights are decayed too), betas/eps torch's
  defaults; lr = np.interp(epoch + (i + 1) / len(loader), [0, 10, 20, 25],
  [0, 0.05, 0.0025, 0]); torch.cuda.amp autocast + GradScaler; --clip-norm off; plain
  nn.CrossEntropyLoss (no label smoothing). Train transforms: RandomResizedCrop(32,
  scale=(1.0, 1.0), ratio=(1.0, 1.0)) (the identity at --scale=1.0), RandomHorizontalFlip,
  transforms.RandAugment(num_ops=2, magnitude=12) (31 bins, nearest, fill 0), ColorJitter(0)
  (off), RandomErasing(p=0) (off); no mixup/cutmix. Test: ToTensor + Normalize only.

Where we differ: bfloat16 instead of float16 autocast; the last, partial batch of every epoch
is dropped (97 steps/epoch instead of 98); BatchNorm sees the whole batch (the original's
nn.DataParallel splits it over its GPUs, one GPU in the README's run).

  python main.py --config=configs/convmixer_cifar10_256_8.py --workdir=/tmp/spatialmix/cm256 \
      --config.mode=full --config.data_dir=../shared/tensorflow_datasets

Expected (*expected*, not yet measured here): test accuracy ≈ 0.925 after 25 epochs in full
mode (locuslab's number, one 2080Ti, ~43 s/epoch). On CPU add --config.dtype=float32.
"""

from configs import convmixer_cifar10
from spatialmix_jax.modeling import presets


def get_config():
  config = convmixer_cifar10.get_config()
  config.mode = 'full'  # the locuslab run trains everything
  # --hdim 256 --depth 8 --conv-ks 5 --psize 2
  config.model.update(presets.model_fields('convmixer_256_8_cifar'))
  return config
