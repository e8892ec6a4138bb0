"""Model registry: builds the model named by `config.model` after validating every field.

Fields of `config.model` (see configs/base.py) and how each model reads them:
  convmixer, unshuffle_convmixer: width, depth (blocks), kernel_size, patch_size (1 for
    unshuffle_convmixer), act.
  sep_resnet_*, resnet_*: depth is the total depth (CIFAR 6n+2, ImageNet 8n+2), kernel_size
    the block convs' kernel (3 is the standard ResNet; the ImageNet stem stays 7x7),
    width_multiplier scales every stage; sep_* use depth_multiplier (9 in the paper).
    width, patch_size and act are ignored (ResNets are ReLU throughout).
  All: spatial_init, smooth_sigma, init, depthwise_impl.
"""

import jax.numpy as jnp

from spatialmix_jax import convmixer
from spatialmix_jax import depthwise
from spatialmix_jax import filters
from spatialmix_jax import layers
from spatialmix_jax import resnet

MODEL_NAMES = ('convmixer', 'unshuffle_convmixer', 'sep_resnet_cifar', 'sep_resnet_imagenet',
               'resnet_cifar', 'resnet_imagenet')


def _check_positive(name, value, minimum=1):
  if not isinstance(value, int) or value < minimum:
    raise ValueError(f'model.{name} must be an integer >= {minimum}, got {value!r}.')


def validate(model_config):
  """Raises a one-line ValueError for any invalid field of `model_config`."""
  mc = model_config
  if mc.name not in MODEL_NAMES:
    raise ValueError(f'Unknown model.name {mc.name!r}; choose one of {MODEL_NAMES}.')
  filters.check_family(mc.spatial_init)
  filters.check_scheme(mc.init)
  impls = ('auto',) + tuple(depthwise.IMPLS)
  if mc.depthwise_impl not in impls:
    raise ValueError(f'Unknown model.depthwise_impl {mc.depthwise_impl!r}; '
                     f'choose one of {impls}.')
  if mc.spatial_init == 'smooth' and not mc.smooth_sigma > 0:
    raise ValueError(f'model.smooth_sigma must be > 0 for smooth filters, got {mc.smooth_sigma}.')
  _check_positive('kernel_size', mc.kernel_size)
  _check_positive('depth_multiplier', mc.depth_multiplier)
  if 'convmixer' in mc.name:
    layers.activation(mc.act)
    _check_positive('width', mc.width)
    _check_positive('depth', mc.depth)
    _check_positive('patch_size', mc.patch_size)
    if mc.name == 'unshuffle_convmixer' and mc.patch_size != 1:
      raise ValueError('unshuffle_convmixer needs model.patch_size 1 so that its output is an '
                       f'image of the input size, got {mc.patch_size}.')
  else:
    _check_positive('width_multiplier', mc.width_multiplier)
    _check_positive('depth', mc.depth)
    resnet.blocks_per_stage(mc.depth, imagenet=mc.name.endswith('imagenet'))


def check_input_size(model_config, image_shape, dataset):
  """A ConvMixer's patch must fit inside the image: a larger one leaves no patch at all."""
  height, width = image_shape[:2]
  if 'convmixer' in model_config.name and model_config.patch_size > min(height, width):
    raise ValueError(f'model.patch_size {model_config.patch_size} is larger than the '
                     f'{height}×{width} images of {dataset}; use at most {min(height, width)}.')


def create_model(model_config, *, num_classes, num_channels, mean, std, dtype=jnp.float32):
  """Returns the Linen module for `model_config` (= `config.model`).

  `num_channels` is the input's channel count (1 or 3); it must match len(mean) and len(std)
  when those are per-channel tuples. Models take NHWC images in [0, 1] and `train: bool`.
  """
  validate(model_config)
  mc = model_config
  mean, std = tuple(mean), tuple(std)
  for label, stats in (('mean', mean), ('std', std)):
    if len(stats) not in (1, num_channels):
      raise ValueError(f'{label} has {len(stats)} entries; expected 1 or num_channels '
                       f'({num_channels}).')
  common = dict(mean=mean, std=std, spatial_init=mc.spatial_init, smooth_sigma=mc.smooth_sigma,
                init_scheme=mc.init, depthwise_impl=mc.depthwise_impl, dtype=dtype)
  if 'convmixer' in mc.name:
    cls = convmixer.UnshuffleConvMixer if mc.name == 'unshuffle_convmixer' else (
        convmixer.ConvMixer)
    return cls(width=mc.width, depth=mc.depth, kernel_size=mc.kernel_size,
               patch_size=mc.patch_size, num_classes=num_classes, act=mc.act, **common)
  return resnet.PreActResNet(
      depth=mc.depth, num_classes=num_classes, imagenet=mc.name.endswith('imagenet'),
      separable=mc.name.startswith('sep_'), kernel_size=mc.kernel_size,
      depth_multiplier=mc.depth_multiplier, width_multiplier=mc.width_multiplier, **common)
