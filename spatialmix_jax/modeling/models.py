"""Model registry: the paper's architectures as partials of two Linen modules, and the one
function that builds the model named by `config.model`.

Every setting keeps its `config.model` name down to the layer that uses it: `spatial_init`,
`smooth_sigma`, `init_scheme` and `depthwise_impl` go into the depthwise partial (and
`init_scheme` into the pointwise one), which the model receives whole. Fields each family reads:
  convmixer, unshuffle_convmixer: width, depth (blocks), kernel_size, patch_size (1 for
    unshuffle_convmixer), act.
  sep_resnet_*, resnet_*: depth is the total depth (CIFAR 6n+2, ImageNet 8n+2), kernel_size
    the block convs' kernel (3 is the standard ResNet; the ImageNet stem stays 7x7),
    width_multiplier scales every stage; sep_* use depth_multiplier (9 in the paper).
    width, patch_size and act do nothing (ResNets are ReLU throughout); a plain resnet_* has
    no depthwise filters, so depth_multiplier and the filter settings do nothing there either.
A field set away from its schema default on a family that does not read it is an error
(`check_ignored_fields`), not a setting silently dropped.
"""

import dataclasses
import functools
from typing import Callable

import jax.numpy as jnp

from spatialmix_jax.infra.errors import ConfigError
from spatialmix_jax.modeling import activations
from spatialmix_jax.modeling import convmixer
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.modeling import filters
from spatialmix_jax.modeling import layers
from spatialmix_jax.modeling import resnet


@dataclasses.dataclass(frozen=True)
class Entry:
  module: Callable  # the Linen class, or a partial of it
  fields: tuple  # config.model fields passed to it by name
  output: str  # 'logits' (classification) or 'image' (un-shuffling), matched by tasks.py
  # Its weight collections, known before it is built so that a mode it cannot be trained in is
  # an error up front; create_experiment checks them against the built model.
  collections: tuple
  # config.model fields read by its layers rather than passed by name (`create_model`).
  layer_fields: tuple

  @property
  def reads(self):
    """Every config.model field that changes this model."""
    return ('name',) + self.fields + self.layer_fields


_CONVMIXER_FIELDS = ('width', 'depth', 'kernel_size', 'patch_size', 'act')
_RESNET_FIELDS = ('depth', 'kernel_size', 'depth_multiplier', 'width_multiplier')
_CONVMIXER_COLLECTIONS = ('channel', 'params', 'spatial', 'stem')
_SEPARABLE_RESNET_COLLECTIONS = ('channel', 'params', 'spatial')
# The depthwise partial's settings, and the pointwise one's (init_scheme): a plain ResNet's
# full convs read only init_scheme.
_SEPARABLE_LAYER_FIELDS = ('spatial_init', 'smooth_sigma', 'init_scheme', 'depthwise_impl')


def _resnet(imagenet, separable):
  module = functools.partial(resnet.PreActResNet, imagenet=imagenet, separable=separable)
  if separable:
    return Entry(module, _RESNET_FIELDS, 'logits', _SEPARABLE_RESNET_COLLECTIONS,
                 _SEPARABLE_LAYER_FIELDS)
  # Without depthwise convs there is nothing for depth_multiplier to multiply.
  return Entry(module, tuple(f for f in _RESNET_FIELDS if f != 'depth_multiplier'), 'logits',
               ('params',), ('init_scheme',))


MODELS = {
    'convmixer': Entry(convmixer.ConvMixer, _CONVMIXER_FIELDS, 'logits', _CONVMIXER_COLLECTIONS,
                       _SEPARABLE_LAYER_FIELDS),
    'unshuffle_convmixer': Entry(convmixer.UnshuffleConvMixer, _CONVMIXER_FIELDS, 'image',
                                 _CONVMIXER_COLLECTIONS, _SEPARABLE_LAYER_FIELDS),
    'sep_resnet_cifar': _resnet(imagenet=False, separable=True),
    'sep_resnet_imagenet': _resnet(imagenet=True, separable=True),
    'resnet_cifar': _resnet(imagenet=False, separable=False),
    'resnet_imagenet': _resnet(imagenet=True, separable=False),
}
MODEL_NAMES = tuple(MODELS)


def get_entry(name):
  if name not in MODELS:
    raise ConfigError(f'Unknown model.name {name!r}; choose one of {MODEL_NAMES}.')
  return MODELS[name]


def _check_positive(name, value, minimum=1):
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ConfigError(f'model.{name} must be an integer >= {minimum}, got {value!r}.')


def validate(model_config):
  """Raises a one-line ValueError for any invalid field of `model_config`."""
  mc = model_config
  entry = get_entry(mc.name)
  filters.check_spatial_init(mc.spatial_init)
  filters.check_init_scheme(mc.init_scheme)
  impls = ('auto',) + tuple(depthwise.IMPLS)
  if mc.depthwise_impl not in impls:
    raise ConfigError(f'Unknown model.depthwise_impl {mc.depthwise_impl!r}; '
                      f'choose one of {impls}.')
  if mc.spatial_init == 'smooth' and not mc.smooth_sigma > 0:
    raise ConfigError(f'model.smooth_sigma must be > 0 for smooth filters, got {mc.smooth_sigma}.')
  _check_positive('kernel_size', mc.kernel_size)
  _check_positive('depth_multiplier', mc.depth_multiplier)
  for name in entry.fields:
    if name == 'act':
      activations.activation(mc.act)
    else:
      _check_positive(name, mc[name])
  if 'width_multiplier' in entry.fields:  # the ResNets
    resnet.blocks_per_stage(mc.depth, imagenet=mc.name.endswith('imagenet'))
  if entry.output == 'image' and mc.patch_size != 1:
    raise ConfigError(f'{mc.name} needs model.patch_size 1 so that its output is an image of '
                      f'the input size, got {mc.patch_size}.')


def check_ignored_fields(model_config, defaults):
  """A ConfigError for a field of `model_config` that is away from its default in `defaults`
  (the schema's config.model) on a model that does not read it, so it would change nothing."""
  entry = get_entry(model_config.name)
  reads = entry.reads
  for name in defaults:
    if name not in reads and model_config[name] != defaults[name]:
      raise ConfigError(
          f'model.{name}={model_config[name]!r} does nothing for {model_config.name}, whose '
          f'fields are model.{", model.".join(f for f in reads if f != "name")}; leave '
          f'model.{name} at its default {defaults[name]!r}.')
  if ('smooth_sigma' in reads and model_config.spatial_init != 'smooth'
      and model_config.smooth_sigma != defaults.smooth_sigma):
    raise ConfigError(
        f'model.smooth_sigma={model_config.smooth_sigma!r} does nothing with model.spatial_init='
        f'{model_config.spatial_init!r}; set model.spatial_init=smooth, or leave smooth_sigma at '
        f'its default {defaults.smooth_sigma!r}.')


def check_input_size(model_config, image_shape, dataset):
  """A ConvMixer's patch must fit inside the image: a larger one leaves no patch at all."""
  height, width = image_shape[:2]
  if 'patch_size' in get_entry(model_config.name).fields and (
      model_config.patch_size > min(height, width)):
    raise ConfigError(f'model.patch_size {model_config.patch_size} is larger than the '
                      f'{height}×{width} images of {dataset}; use at most {min(height, width)}.')


def create_model(model_config, *, num_classes, num_channels, mean, std, dtype=jnp.float32):
  """Returns the Linen module for `model_config` (= `config.model`), validated.

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
  entry = get_entry(mc.name)
  depthwise_layer = functools.partial(
      layers.DepthwiseConv, spatial_init=mc.spatial_init, smooth_sigma=mc.smooth_sigma,
      init_scheme=mc.init_scheme, depthwise_impl=mc.depthwise_impl, dtype=dtype)
  pointwise_layer = functools.partial(layers.PointwiseConv, init_scheme=mc.init_scheme,
                                      dtype=dtype)
  return entry.module(num_classes=num_classes, mean=mean, std=std, init_scheme=mc.init_scheme,
                      dtype=dtype, depthwise=depthwise_layer, pointwise=pointwise_layer,
                      **{name: mc[name] for name in entry.fields})
