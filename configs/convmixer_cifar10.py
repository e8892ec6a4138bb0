"""The paper's CIFAR-10 ConvMixer: width 128, kernel 8, patch 1 (depth 8 by default).

Recipe: the ConvMixer CIFAR-10 code the paper trained with (locuslab/convmixer-cifar10):
AdamW, piecewise-linear one-cycle, weight decay 0.005, batch 512, 25 epochs, flip.

  python main.py --config=configs/convmixer_cifar10.py --workdir=/tmp/spatialmix/cm_cifar \
      --config.mode=chans --config.data_dir=../shared/tensorflow_datasets

Expected (not yet measured here): the paper's Fig. 5 regime, chans within a few points of full.
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
  config.batch_size = 512
  config.eval_batch_size = 1000
  config.num_epochs = 25
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 0.05
  config.optimizer.weight_decay = 0.005
  config.optimizer.schedule = 'piecewise_onecycle'
  config.augment.flip = True
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  return config
