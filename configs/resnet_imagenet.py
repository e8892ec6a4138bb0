"""Separable pre-activation ResNet, ImageNet form (8n+2 layers; 18 by default), d = 9.

Our recipe (the paper states none): SGD momentum 0.9, lr 0.1 per 256 images (batch 1024 →
0.4), weight decay 1e-4, 5 warm-up epochs then cosine over 90 epochs, inception crop + flip
at 224, centre crop 0.875 for eval, bfloat16.

  python main.py --config=configs/resnet_imagenet.py --workdir=gs://BUCKET/rn18 --config.mode=chans

Expected (not measured here; needs a TPU/GPU slice and prepared imagenet2012).
"""

from configs import base


def get_config():
  config = base.get_config()
  config.dataset = 'imagenet2012'
  config.mode = 'chans'
  config.model.name = 'sep_resnet_imagenet'
  config.model.depth = 18
  config.model.kernel_size = 3
  config.model.depth_multiplier = 9
  config.dtype = 'bfloat16'
  config.batch_size = 1024
  config.eval_batch_size = 1024
  config.num_epochs = 90
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.4
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'warmup_cosine'
  config.optimizer.warmup_epochs = 5.0
  config.augment.inception_crop = True
  config.augment.flip = True
  config.augment.image_size = 224
  config.input.cache = False
  config.input.shuffle_buffer = 16_384
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  return config
