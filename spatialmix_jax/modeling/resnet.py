"""Pre-activation ResNets with basic blocks (He et al., "Identity Mappings in Deep Residual
Networks", 2016), optionally with every conv split into a separable conv.

CIFAR form (depth 6n+2): conv(16·wm) -> 3 stages of n blocks, widths (16, 32, 64)·wm,
stride 2 entering stages 2 and 3 -> BN-ReLU -> pool -> linear.
ImageNet form (depth 8n+2): conv7x7/2(64·wm) -> BN-ReLU -> maxpool3x3/2 -> 4 stages of n
blocks, widths (64, 128, 256, 512)·wm, stride 2 entering stages 2-4 -> BN-ReLU -> pool ->
linear.

`separable=True` replaces every conv, stem included, by depthwise (`spatial`, multiplier
`depth_multiplier`) then pointwise (`channel`), without conv biases because BN follows; the
1x1 projection shortcuts are channel mixing and go to `channel`. So the separable stem is
split between the two mixers rather than frozen as a whole (it has no `stem` collection).
The plain form keeps every weight in `params`.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from spatialmix_jax.infra.errors import ConfigError
from spatialmix_jax.modeling import layers

CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)


def blocks_per_stage(depth, imagenet):
  """n for a ResNet of total depth 6n+2 (CIFAR) or 8n+2 (ImageNet); ConfigError otherwise."""
  per_block = 8 if imagenet else 6
  if depth < per_block + 2 or (depth - 2) % per_block:
    form = 'ImageNet ResNet depth must be 8n+2 (10, 18, 26, ...)' if imagenet else (
        'CIFAR ResNet depth must be 6n+2 (8, 14, 20, 32, 56, 110, ...)')
    raise ConfigError(f'{form} with n >= 1, got {depth}.')
  return (depth - 2) // per_block


class PreActResNet(nn.Module):
  """Classifier of NHWC images in [0, 1]; returns float32 logits (N, num_classes).

  `depthwise` and `pointwise` are layer partials carrying the mixers' settings (filter
  family, init scheme, implementation, dtype): `models.create_model` builds them.
  """
  depth: int
  num_classes: int
  imagenet: bool = False
  separable: bool = False
  kernel_size: int = 3
  depth_multiplier: int = 9
  width_multiplier: int = 1
  mean: Sequence[float] = (0.0,)
  std: Sequence[float] = (1.0,)
  init_scheme: str = 'torch'
  dtype: Any = jnp.float32
  depthwise: Callable[..., nn.Module] = layers.DepthwiseConv
  pointwise: Callable[..., nn.Module] = layers.PointwiseConv

  def conv(self, features, kernel_size, strides=1):
    if self.separable:
      return layers.SeparableConv(features, kernel_size, strides, self.depth_multiplier,
                                  use_bias=False, depthwise=self.depthwise,
                                  pointwise=self.pointwise)
    return layers.Conv(features, kernel_size, strides, init_scheme=self.init_scheme,
                       dtype=self.dtype)

  def shortcut(self, features, strides):
    return self.pointwise(features, use_bias=False, strides=strides,
                          collection='channel' if self.separable else 'params')

  @nn.compact
  def __call__(self, x, train: bool):
    n = blocks_per_stage(self.depth, self.imagenet)
    norm_act = lambda y: nn.relu(layers.BatchNorm(
        use_running_average=not train, dtype=self.dtype)(y))
    widths = IMAGENET_WIDTHS if self.imagenet else CIFAR_WIDTHS
    widths = [w * self.width_multiplier for w in widths]
    x = layers.normalize(x.astype(jnp.float32), self.mean, self.std)
    if self.imagenet:
      x = norm_act(self.conv(widths[0], 7, 2)(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding='SAME')
    else:
      x = self.conv(widths[0], self.kernel_size)(x)
    for stage, width in enumerate(widths):
      for block in range(n):
        strides = 2 if stage > 0 and block == 0 else 1
        pre = norm_act(x)
        # Projection shortcuts read the pre-activated input, as in the identity-mapping paper.
        skip = self.shortcut(width, strides)(pre) if (
            strides != 1 or x.shape[-1] != width) else x
        y = self.conv(width, self.kernel_size, strides)(pre)
        y = self.conv(width, self.kernel_size)(norm_act(y))
        x = skip + y
    x = jnp.mean(norm_act(x), axis=(1, 2))
    return layers.Dense(self.num_classes, self.init_scheme, self.dtype)(x).astype(jnp.float32)
