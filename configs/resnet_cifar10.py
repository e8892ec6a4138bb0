"""Separable pre-activation ResNet (CIFAR form, 6n+2 layers, depth multiplier 9) on CIFAR-10.

The paper does not state its ResNet recipe; this is our choice, the standard one for
pre-activation ResNets: SGD momentum 0.9, lr 0.1 at batch 128, weight decay 5e-4, cosine
over 200 epochs, pad-4 crop + flip. The non-separable baseline is
`--config.model.name=resnet_cifar --config.model.depth_multiplier=1 --config.mode=full` (its
full convs have no depth multiplier and no spatial mixer to freeze).

  python main.py --config=configs/resnet_cifar10.py --workdir=/tmp/spatialmix/rn_cifar \
      --config.model.depth=20 --config.mode=chans --config.data_dir=../shared/tensorflow_datasets

Expected (not yet measured here).
"""

from configs import base


def get_config():
  config = base.get_config()
  config.dataset = 'cifar10'
  config.mode = 'chans'
  config.model.name = 'sep_resnet_cifar'
  config.model.depth = 20
  config.model.kernel_size = 3
  config.model.depth_multiplier = 9
  config.model.width_multiplier = 1
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 200
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = 'warmup_cosine'
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.checkpoint_every_steps = 2000
  return config
