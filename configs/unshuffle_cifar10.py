"""Pixel un-shuffling (paper §4.4) on CIFAR-10 (32×32×3, TFDS-prepared).

  python main.py --config=configs/unshuffle_cifar10.py --workdir=/tmp/spatialmix/unshuffle_c10 \
      --config.mode=chans --config.data_dir=../shared/tensorflow_datasets
  python main.py --config=configs/unshuffle_cifar10.py:large ...   # the paper's large model

Presets (the config_flags argument after ':'):
  ''     (default) width 256, depth 12, kernel 7: 12 × 6 + 1 = 73 ≥ 63, a global view.
  large  the paper's "large" CIFAR model: depth 16, width 512, kernel 7.
Expected (not yet measured here): chans close to full, both far above scrambled_psnr.
"""

from configs import base

PRESETS = {
    '': dict(width=256, depth=12, kernel_size=7),
    'large': dict(width=512, depth=16, kernel_size=7),
}


def get_config(preset=''):
  if preset not in PRESETS:
    raise ValueError(f'Unknown preset {preset!r} of unshuffle_cifar10; choose one of '
                     f'{tuple(PRESETS)}.')
  config = base.get_config()
  config.dataset = 'cifar10'
  config.task = 'unshuffle'
  config.mode = 'chans'
  config.model.name = 'unshuffle_convmixer'
  config.model.update(PRESETS[preset])
  config.model.patch_size = 1
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = 20
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.002
  config.optimizer.weight_decay = 0.0
  config.optimizer.schedule = 'onecycle'
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  return config
