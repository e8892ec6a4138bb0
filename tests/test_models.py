"""Model shapes, parameter counts (eqs. 1-3 of the paper) and config validation."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from spatialmix_jax.modeling import activations
from spatialmix_jax.modeling import convmixer
from spatialmix_jax.modeling import layers
from spatialmix_jax.modeling import models
from spatialmix_jax.modeling import presets

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _model_config(**overrides):
  mc = base.get_config().model
  mc.update(dict(width=8, depth=2, kernel_size=3, patch_size=2), **overrides)
  return mc


def _sizes(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _init_shapes(module, x, **kwargs):
  """Variable shapes only: nothing is computed, so big models cost just a trace."""
  return jax.eval_shape(lambda x: module.init(jax.random.key(0), x, **kwargs), x)


def _init(model, x):
  # unsafe_rbg compiles several times faster than threefry on CPU; the values are irrelevant.
  return jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(1, impl='unsafe_rbg'), x)


def _counts(variables):
  return {c: _sizes(t) for c, t in variables.items()}


@pytest.mark.parametrize('name, depth, size, expected', [
    ('convmixer', 2, 8, (2, 10)),
    ('unshuffle_convmixer', 2, 8, (2, 8, 8, 3)),
    ('sep_resnet_cifar', 8, 8, (2, 10)),
    ('resnet_cifar', 8, 8, (2, 10)),
    ('sep_resnet_imagenet', 10, 32, (2, 10)),
    ('resnet_imagenet', 10, 32, (2, 10)),
])
def test_output_shapes(name, depth, size, expected):
  patch_size = 1 if name == 'unshuffle_convmixer' else 2
  config = _model_config(name=name, depth=depth, patch_size=patch_size)
  model = models.create_model(config, num_classes=10, num_channels=3, mean=MEAN, std=STD)
  x = jnp.zeros((2, size, size, 3))
  variables = _init_shapes(model, x, train=False)
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert out.shape == expected and out.dtype == jnp.float32


def test_unshuffle_returns_an_image_like_its_grayscale_input():
  config = _model_config(name='unshuffle_convmixer', patch_size=1, depth=1)
  model = models.create_model(config, num_classes=0, num_channels=1, mean=(0.5,), std=(0.25,))
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
  variables = _init(model, x)
  y = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  assert y.shape == x.shape and y.dtype == jnp.float32 and np.all(np.isfinite(y))
  assert variables['params']['Dense_0']['kernel'].shape == (8, 1)


def _convmixer_count(width, depth, k, p, classes, channels=3):
  stem = p * p * channels * width + width
  block = (k * k * width + width) + (width * width + width)
  batch_norm = 2 * width * (1 + 2 * depth)
  return stem + depth * block + batch_norm + width * classes + classes


@pytest.mark.parametrize('name', sorted(presets.PRESETS))
def test_every_preset_builds_with_the_parameter_count_of_its_source(name):
  preset = presets.get(name)
  fields = {k: v for k, v in preset.model.items() if k != 'name'}
  model = convmixer.ConvMixer(**fields, num_classes=preset.classes)
  size = 224 if preset.classes == 1000 else 32
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  variables = _init_shapes(model, x, train=False)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert out.shape == (1, preset.classes)
  counts = _counts(variables)
  total = sum(n for c, n in counts.items() if c != 'batch_stats')
  assert total == _convmixer_count(fields['width'], fields['depth'], fields['kernel_size'],
                                   fields['patch_size'], preset.classes)
  if preset.params is not None:  # the size the source reports, as it rounds it
    assert round(total / 1e6, 1) == preset.params


def test_presets_with_an_unstated_depth_say_so():
  for name in ('spatialmix_cifar', 'spatialmix_imagenet'):
    assert presets.get(name).assumed == ('depth',)
    assert 'assumed: depth' in presets.get(name).describe()
  with pytest.raises(ValueError, match='choose one of'):
    presets.get('convmixer_512_16')


def test_small_convmixer_counts_by_collection():
  width, depth, k, p, classes = 8, 3, 5, 2, 7
  model = convmixer.ConvMixer(width, depth, k, p, classes)
  counts = _counts(_init_shapes(model, jnp.zeros((1, 8, 8, 3)), train=False))
  assert counts['spatial'] == depth * (k * k * width + width)
  assert counts['channel'] == depth * (width * width + width)
  assert counts['stem'] == p * p * 3 * width + width
  assert counts['params'] == 2 * width * (1 + 2 * depth) + width * classes + classes
  assert counts['batch_stats'] == counts['params'] - width * classes - classes
  assert sum(n for c, n in counts.items() if c != 'batch_stats') == _convmixer_count(
      width, depth, k, p, classes)


@pytest.mark.parametrize('c_in, c_out, k, d', [(3, 8, 3, 1), (8, 16, 3, 9), (4, 6, 5, 2)])
def test_separable_and_full_conv_counts(c_in, c_out, k, d):
  x = jnp.zeros((1, 8, 8, c_in))
  full = _counts(_init_shapes(layers.Conv(c_out, k), x))
  assert full == {'params': c_in * c_out * k * k}  # eq. 1
  for use_bias in (False, True):
    sep = _counts(_init_shapes(
        layers.SeparableConv(c_out, k, depth_multiplier=d, use_bias=use_bias), x))
    biases = (c_in * d, c_out) if use_bias else (0, 0)
    assert sep == {'spatial': c_in * k * k * d + biases[0],  # eq. 2
                   'channel': c_in * d * c_out + biases[1]}


@pytest.mark.parametrize('c_in, c_out, k', [(3, 8, 3), (16, 32, 3), (4, 4, 5)])
def test_pointwise_with_d_equal_k_squared_matches_full_conv(c_in, c_out, k):
  x = jnp.zeros((1, 6, 6, c_in))
  sep = _init_shapes(layers.SeparableConv(c_out, k, depth_multiplier=k * k), x)
  full = _init_shapes(layers.Conv(c_out, k), x)
  assert _sizes(sep['channel']) == _sizes(full['params'])  # eq. 3


@pytest.mark.parametrize('name, depth, stages', [('resnet_cifar', 14, 3),
                                                 ('resnet_imagenet', 18, 4)])
def test_resnet_depth_counts_conv_layers(name, depth, stages):
  model = models.create_model(_model_config(name=name, depth=depth), num_classes=10,
                              num_channels=3, mean=MEAN, std=STD)
  params = _init_shapes(model, jnp.zeros((1, 32, 32, 3)), train=False)['params']
  kernels = [x for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
             if path[-1].key == 'kernel' and x.ndim == 4]
  # depth = convs on the main path + classifier; stages after the first add a projection.
  assert len(kernels) == depth - 1 + (stages - 1)


def test_separable_resnet_keeps_only_bn_and_head_in_params():
  model = models.create_model(
      _model_config(name='sep_resnet_cifar', depth=8, depth_multiplier=9), num_classes=10,
      num_channels=3, mean=MEAN, std=STD)
  variables = _init_shapes(model, jnp.zeros((1, 8, 8, 3)), train=False)
  assert set(variables) == {'params', 'batch_stats', 'spatial', 'channel'}
  leaves = jax.tree_util.tree_flatten_with_path(variables['params'])[0]
  assert all('BatchNorm' in path[0].key or 'Dense' in path[0].key for path, _ in leaves)
  # 3x3 depthwise with d = 9 everywhere: the stem maps 3 channels to 27.
  assert variables['spatial']['SeparableConv_0']['depthwise']['kernel'].shape == (3, 3, 1, 27)


def test_normalisation_happens_inside_the_model():
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
  config = _model_config(depth=1)
  normed = models.create_model(config, num_classes=4, num_channels=3, mean=MEAN, std=STD)
  plain = models.create_model(config, num_classes=4, num_channels=3, mean=(0.0,), std=(1.0,))
  variables = _init(normed, x)

  @jax.jit
  def both(variables, x):
    return (normed.apply(variables, x, train=False),
            plain.apply(variables, (x - np.array(MEAN)) / np.array(STD), train=False))

  np.testing.assert_allclose(*both(variables, x), atol=1e-5)


def test_gelu_is_exact():
  x = jnp.linspace(-4, 4, 33)
  np.testing.assert_allclose(activations.activation('gelu')(x),
                             0.5 * x * (1 + jax.scipy.special.erf(x / np.sqrt(2))), atol=1e-6)


def test_bfloat16_compute_keeps_float32_variables():
  model = models.create_model(_model_config(), num_classes=4, num_channels=3, mean=MEAN,
                              std=STD, dtype=jnp.bfloat16)
  x = jnp.ones((1, 8, 8, 3))
  variables = _init_shapes(model, x, train=False)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert out.dtype == jnp.float32


@pytest.mark.parametrize('overrides, match', [
    (dict(name='vit'), 'convmixer.*unshuffle_convmixer.*sep_resnet_cifar.*resnet_imagenet'),
    (dict(spatial_init='gabor'), 'random.*same.*box.*identity.*smooth'),
    (dict(init_scheme='kaiming'), 'torch.*flax'),
    (dict(act='swish'), 'gelu.*relu'),
    (dict(depthwise_impl='cuda'), 'auto.*xla'),
    (dict(width=0), 'width.*>= 1'),
    (dict(depth=-1), 'depth.*>= 1'),
    (dict(kernel_size=0), 'kernel_size.*>= 1'),
    (dict(patch_size=0), 'patch_size.*>= 1'),
    (dict(depth_multiplier=0), 'depth_multiplier.*>= 1'),
    (dict(spatial_init='smooth', smooth_sigma=0.0), 'smooth_sigma'),
    (dict(name='resnet_cifar', depth=18), '6n\\+2.*8, 14, 20'),
    (dict(name='sep_resnet_imagenet', depth=20), '8n\\+2.*10, 18, 26'),
    (dict(name='resnet_cifar', width_multiplier=0), 'width_multiplier.*>= 1'),
    (dict(name='unshuffle_convmixer', patch_size=2), 'patch_size 1'),
])
def test_invalid_config_raises_one_line_value_error(overrides, match):
  with pytest.raises(ValueError, match=match) as err:
    models.create_model(_model_config(**overrides), num_classes=10, num_channels=3,
                        mean=MEAN, std=STD)
  assert '\n' not in str(err.value)


def test_mean_std_must_fit_the_channels():
  with pytest.raises(ValueError, match='num_channels'):
    models.create_model(_model_config(), num_classes=10, num_channels=1, mean=MEAN, std=STD)


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_registry_declares_the_collections_each_model_has(name):
  depth = {'sep_resnet_imagenet': 10, 'resnet_imagenet': 10}.get(name, 8)
  config = _model_config(name=name, depth=depth, patch_size=1)
  model = models.create_model(config, num_classes=10, num_channels=3, mean=MEAN, std=STD)
  shapes = _init_shapes(model, jnp.zeros((1, 32, 32, 3)), train=False)
  assert tuple(sorted(c for c in shapes if c != 'batch_stats')) == (
      models.get_entry(name).collections)
