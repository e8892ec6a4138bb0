"""The paper's ImageNet ConvMixer: width 512, kernel 8, patch 7 (depth overridable).

Recipe: the ConvMixer paper's timm command (locuslab/convmixer README): AdamW lr 0.01,
eps 1e-3, one-cycle, 150 epochs, no warm-up, batch 640, input 224, gradient clipping 1.0.
Pass a preset to get the ConvMixer paper's models instead: `:1536_20` or `:768_32`.

  python main.py --config=configs/convmixer_imagenet.py --workdir=gs://BUCKET/cm512 \
      --config.model.depth=12 --config.mode=chans

Expected (not measured here; needs a TPU/GPU slice and prepared imagenet2012).
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
  config.dtype = 'bfloat16'
  config.batch_size = 640
  config.eval_batch_size = 1024
  config.num_epochs = 300 if preset == '768_32' else 150
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.01
  config.optimizer.eps = 1e-3
  config.optimizer.schedule = 'onecycle'
  config.optimizer.grad_clip_norm = 1.0
  config.augment.inception_crop = True
  config.augment.flip = True
  config.augment.image_size = 224
  config.input.cache = False
  config.input.shuffle_buffer = 16_384
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  return config
