"""Separable pre-activation ResNet on CIFAR-100: the CIFAR-10 recipe with 100 classes.

  python main.py --config=configs/resnet_cifar100.py --workdir=/tmp/spatialmix/rn_c100

Expected (not yet measured here).
"""

from configs import resnet_cifar10


def get_config():
  config = resnet_cifar10.get_config()
  config.dataset = 'cifar100'
  return config
