"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?") with separable mixers.

stem -> act -> BN, then `depth` x [x + BN(act(depthwise(x))) -> BN(act(pointwise(.)))], then
a task head. Only the depthwise convs (`spatial`), pointwise convs (`channel`) and the patch
stem (`stem`) are mixers; see `layers.py` for the collections.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from spatialmix_jax.modeling import layers


class ConvMixer(nn.Module):
  """Classifier of NHWC images in [0, 1]; returns float32 logits (N, num_classes).

  `depthwise` and `pointwise` are layer partials carrying the mixers' settings (filter
  family, init scheme, implementation, dtype): `models.create_model` builds them.
  """
  width: int
  depth: int
  kernel_size: int = 9
  patch_size: int = 7
  num_classes: int = 1000
  act: str = 'gelu'
  mean: Sequence[float] = (0.0,)
  std: Sequence[float] = (1.0,)
  init_scheme: str = 'torch'
  dtype: Any = jnp.float32
  depthwise: Callable[..., nn.Module] = layers.DepthwiseConv
  pointwise: Callable[..., nn.Module] = layers.PointwiseConv

  def mix(self, x, train):
    """Normalisation, stem and mixer blocks; called from a compact `__call__`."""
    # BN(act(conv + bias)): the norm adds the mixers' biases and applies the activation, so
    # it can fuse the three (`add_bias=False` hands it the bias).
    act_norm = functools.partial(layers.BatchNorm, use_running_average=not train,
                                 dtype=self.dtype, act=self.act)
    x = layers.normalize(x.astype(jnp.float32), self.mean, self.std)
    x = act_norm()(layers.PatchStem(self.width, self.patch_size, self.init_scheme, self.dtype)(x))
    for _ in range(self.depth):
      y, bias = self.depthwise(kernel_size=self.kernel_size, use_bias=True)(x, add_bias=False)
      x = x + act_norm()(y, shift=bias)
      y, bias = self.pointwise(self.width)(x, add_bias=False)
      x = act_norm()(y, shift=bias)
    return x

  @nn.compact
  def __call__(self, x, train: bool):
    x = jnp.mean(self.mix(x, train), axis=(1, 2))
    return layers.Dense(self.num_classes, self.init_scheme, self.dtype)(x).astype(jnp.float32)


class UnshuffleConvMixer(ConvMixer):
  """Pixel un-shuffling: patch 1, no pooling, a linear 1x1 head back to the input channels.

  Returns a float32 NHWC image of the input's shape; `num_classes` is unused.
  """
  patch_size: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    # The head is the task's read-out, not a mixer, so it lives in `params` (Dense acts on
    # the channel axis, i.e. a 1x1 conv).
    y = layers.Dense(x.shape[-1], self.init_scheme, self.dtype)(self.mix(x, train))
    return y.astype(jnp.float32)
