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

from spatialmix_jax.config import recipes

PRESETS = recipes.IMAGENET_PRESETS  # variant -> the preset it trains


def get_config(preset=''):
  return recipes.convmixer_imagenet(preset)
