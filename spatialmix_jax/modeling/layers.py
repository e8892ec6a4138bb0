"""Linen layers that keep spatial and channel mixing in separate variable collections.

Collections: depthwise kernels/biases in `spatial`, pointwise (1x1) ones in `channel`, the
ConvMixer patch stem in `stem`; task heads, full (non-separable) convs and BatchNorm scales in
`params`, BatchNorm statistics in `batch_stats`. Freezing a mixer is then a matter of
collection names (see `freezing.py`). Variables are float32; compute runs in `dtype`.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from spatialmix_jax.modeling import batch_norm
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.modeling import filters

# PyTorch's BatchNorm2d defaults: torch momentum 0.1 weights the new batch, ours (as flax's)
# the running average.
BatchNorm = functools.partial(batch_norm.BatchNorm, momentum=0.9, epsilon=1e-5)


def normalize(x, mean, std):
  """(x - mean) / std per channel, for NHWC images in [0, 1]."""
  return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


def _variable(module, collection, name, init, shape):
  return module.variable(
      collection, name, lambda: init(module.make_rng('params'), shape, jnp.float32)).value


class DepthwiseConv(nn.Module):
  """'SAME' depthwise conv: kernel (k, k, 1, C*d) and bias (C*d,) in `spatial`.

  Called with `add_bias=False` it returns (conv output, bias or None) for a consumer that adds
  the bias in a pass it makes anyway (`batch_norm.BatchNorm(act=...)(y, shift=bias)`)."""
  depth_multiplier: int = 1
  kernel_size: int = 3
  strides: int = 1
  use_bias: bool = True
  spatial_init: str = 'random'
  smooth_sigma: float = 1.0
  init_scheme: str = 'torch'
  depthwise_impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, add_bias=True):
    k, out = self.kernel_size, x.shape[-1] * self.depth_multiplier
    init = filters.kernel_init(self.spatial_init, self.init_scheme, self.smooth_sigma,
                               self.depth_multiplier)
    kernel = _variable(self, 'spatial', 'kernel', init, (k, k, 1, out))
    y = depthwise.depthwise_conv(x.astype(self.dtype), kernel.astype(self.dtype),
                                 stride=self.strides, impl=self.depthwise_impl)
    bias = None
    if self.use_bias:
      bias = _variable(self, 'spatial', 'bias', filters.bias_init(self.init_scheme, k * k),
                       (out,)).astype(self.dtype)
    return _biased(y, bias, add_bias)


def _biased(y, bias, add_bias):
  if not add_bias:
    return y, bias
  return y if bias is None else y + bias


class PointwiseConv(nn.Module):
  """1x1 conv (channel mixing): kernel (1, 1, C_in, features) and bias in `collection`;
  `add_bias=False` as for `DepthwiseConv`."""
  features: int
  use_bias: bool = True
  strides: int = 1
  init_scheme: str = 'torch'
  collection: str = 'channel'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, add_bias=True):
    c_in = x.shape[-1]
    kernel = _variable(self, self.collection, 'kernel',
                       filters.kernel_init('random', self.init_scheme), (1, 1, c_in, self.features))
    # A strided 1x1 'SAME' conv reads exactly the pixels at multiples of the stride.
    x = x[:, ::self.strides, ::self.strides].astype(self.dtype)
    y = jnp.einsum('nhwc,cf->nhwf', x, kernel[0, 0].astype(self.dtype))
    bias = None
    if self.use_bias:
      bias = _variable(self, self.collection, 'bias', filters.bias_init(self.init_scheme, c_in),
                       (self.features,)).astype(self.dtype)
    return _biased(y, bias, add_bias)


def patchify(x, kernel):
  """A 'VALID' conv whose stride equals its kernel size (non-overlapping patches), as one
  matmul of the flattened patches: XLA:CPU runs the strided convolution of a few input
  channels several times slower than this matmul of the same FLOPs."""
  n, h, w, c = x.shape
  k = kernel.shape[0]
  h, w = h // k, w // k
  patches = x[:, :h * k, :w * k].reshape(n, h, k, w, k, c).transpose(0, 1, 3, 2, 4, 5)
  return jnp.einsum('nhwpqc,pqcf->nhwf', patches, kernel)


class Conv(nn.Module):
  """Full (spatial + channel) conv with a (k, k, C_in, features) kernel in `collection`."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: str = 'SAME'
  use_bias: bool = False
  init_scheme: str = 'torch'
  collection: str = 'params'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, c_in = self.kernel_size, x.shape[-1]
    kernel = _variable(self, self.collection, 'kernel',
                       filters.kernel_init('random', self.init_scheme), (k, k, c_in, self.features))
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.padding == 'VALID' and self.strides == k:
      y = patchify(x, kernel)
    else:
      y = lax.conv_general_dilated(x, kernel, (self.strides, self.strides), self.padding,
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      bias_init = filters.bias_init(self.init_scheme, k * k * c_in)
      y = y + _variable(self, self.collection, 'bias', bias_init,
                        (self.features,)).astype(self.dtype)
    return y


class PatchStem(nn.Module):
  """ConvMixer patch embedding: conv k = stride = p, VALID, with bias, in `stem`.

  It mixes space and channels at once, so it belongs to neither mixer and both ablations
  freeze it.
  """
  features: int
  patch_size: int
  init_scheme: str = 'torch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return Conv(self.features, self.patch_size, self.patch_size, 'VALID', use_bias=True,
                init_scheme=self.init_scheme, collection='stem', dtype=self.dtype, name='conv')(x)


class SeparableConv(nn.Module):
  """Depthwise (C_in -> C_in*d, `spatial`) then pointwise (-> features, `channel`).

  `depthwise` and `pointwise` are the layer partials the model was built with (their filter
  family, init scheme, implementation and dtype); this layer adds only the geometry.
  Parameters: C_in·k²·d + C_in·d·features (eq. 2 of the paper), plus C_in·d + features
  biases when `use_bias`.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  depth_multiplier: int = 1
  use_bias: bool = False
  depthwise: Callable[..., nn.Module] = DepthwiseConv
  pointwise: Callable[..., nn.Module] = PointwiseConv

  @nn.compact
  def __call__(self, x):
    x = self.depthwise(depth_multiplier=self.depth_multiplier, kernel_size=self.kernel_size,
                       strides=self.strides, use_bias=self.use_bias, name='depthwise')(x)
    return self.pointwise(self.features, use_bias=self.use_bias, name='pointwise')(x)


class Dense(nn.Module):
  """Linear head on the last axis, in `params`, biased, with the scheme's init."""
  features: int
  init_scheme: str = 'torch'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c_in = x.shape[-1]
    kernel = self.param('kernel', filters.kernel_init('random', self.init_scheme),
                        (c_in, self.features), jnp.float32)
    bias = self.param('bias', filters.bias_init(self.init_scheme, c_in), (self.features,),
                      jnp.float32)
    x = x.astype(self.dtype)
    return jnp.dot(x, kernel.astype(self.dtype)) + bias.astype(self.dtype)
