"""Batch normalisation over every axis but the last, optionally of an activation of its input,
with a hand-written backward pass.

Same variables, defaults and forward arithmetic as `flax.linen.BatchNorm` (scale and bias in
`params`, running `mean` and `var` in `batch_stats`; statistics in float32 as E[x²] − E[x]²,
clipped at 0), so checkpoints and results carry over. What differs is the gradient: autodiff
of the normalisation leaves XLA:CPU a chain of reductions and elementwise passes through the
mean and variance; the closed form

  dx = scale·inv·(dy − mean(dy) − x̂·mean(dy·x̂)),  dscale = Σ dy·x̂,  dbias = Σ dy

needs one reduction pass over (dy, x) and one elementwise pass, as PyTorch's kernel does.

`BatchNorm(act='gelu')` normalises gelu(x), the ConvMixer's BN(GELU(conv)). In training on
CPU in float32 that runs as one native kernel pair (csrc/gelu_norm_cpu.cc, built by
`native.py`), which also keeps GELU's derivative from the forward pass and adds the conv's
bias (`shift`, when the conv hands it over instead of adding it) in the same pass; elsewhere
(GPU, TPU, bfloat16, evaluation, no compiler) the shift and activation are applied by XLA and
the result normalised as above.
"""

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from spatialmix_jax.modeling import activations
from spatialmix_jax.kernels import native


def _statistics(x32):
  axes = tuple(range(x32.ndim - 1))
  mean = jnp.mean(x32, axes)
  var = jnp.maximum(0.0, jnp.mean(x32 * x32, axes) - mean * mean)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_batch(x, scale, bias, epsilon):
  """(y, mean, var): x normalised by its own statistics over every axis but the last, in
  float32, returned in x's dtype. The statistics carry no gradient (they feed only the
  running averages)."""
  y, mean, var, _ = _forward(x, scale, bias, epsilon)
  return y, mean, var


def _forward(x, scale, bias, epsilon):
  x32 = x.astype(jnp.float32)
  mean, var = _statistics(x32)
  inv = lax.rsqrt(var + epsilon)
  y = (x32 - mean) * (inv * scale) + bias
  return y.astype(x.dtype), mean, var, inv


def _normalize_batch_fwd(x, scale, bias, epsilon):
  y, mean, var, inv = _forward(x, scale, bias, epsilon)
  return (y, mean, var), (x, mean, inv, scale)


def _normalize_batch_bwd(epsilon, residuals, cotangents):
  del epsilon
  x, mean, inv, scale = residuals
  dy = cotangents[0].astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  x_hat = (x.astype(jnp.float32) - mean) * inv
  dbias = jnp.sum(dy, axes)
  dscale = jnp.sum(dy * x_hat, axes)
  dx = (scale * inv) * (dy - dbias / count - x_hat * (dscale / count))
  return dx.astype(x.dtype), dscale, dbias


normalize_batch.defvjp(_normalize_batch_fwd, _normalize_batch_bwd)


def _gelu_norm_call(a, shift, scale, bias, epsilon):
  shape, channels = jax.ShapeDtypeStruct(a.shape, jnp.float32), jax.ShapeDtypeStruct(
      scale.shape, jnp.float32)
  return jax.ffi.ffi_call('spatialmix_gelu_norm_fwd', (shape, shape, shape, channels, channels),
                          vmap_method='sequential')(a, scale, bias, shift,
                                                    epsilon=np.float32(epsilon))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def gelu_normalize_batch(a, shift, scale, bias, epsilon):
  """normalize_batch(gelu(a + shift), ...) for float32 `a` and a per-channel `shift` on the
  native CPU kernel."""
  y, _, _, mean, var = _gelu_norm_call(a, shift, scale, bias, epsilon)
  return y, mean, var


def _gelu_normalize_batch_fwd(a, shift, scale, bias, epsilon):
  y, g, dg, mean, var = _gelu_norm_call(a, shift, scale, bias, epsilon)
  return (y, mean, var), (g, dg, mean, var, scale)


def _gelu_normalize_batch_bwd(epsilon, residuals, cotangents):
  g, dg, mean, var, scale = residuals
  channels = jax.ShapeDtypeStruct(scale.shape, jnp.float32)
  da, dscale, dbias, dshift = jax.ffi.ffi_call(
      'spatialmix_gelu_norm_bwd', (jax.ShapeDtypeStruct(g.shape, jnp.float32), channels,
                                   channels, channels), vmap_method='sequential')(
          cotangents[0].astype(jnp.float32), g, dg, mean, var, scale,
          epsilon=np.float32(epsilon))
  return da, dshift, dscale, dbias


gelu_normalize_batch.defvjp(_gelu_normalize_batch_fwd, _gelu_normalize_batch_bwd)


def _fused_gelu(act, x):
  return (act == 'gelu' and x.dtype == jnp.float32 and jax.default_backend() == 'cpu'
          and native.available())


class BatchNorm(nn.Module):
  """BatchNorm over NHWC (or NC) inputs, of `act(x + shift)` when `act` is set; `momentum`
  weights the running average, as in flax. `shift`: a per-channel bias the preceding layer
  left for this one to add (`layers.DepthwiseConv(...)(x, add_bias=False)`), which the fused
  kernel adds without a pass of its own."""
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  act: Optional[str] = None

  @nn.compact
  def __call__(self, x, shift=None):
    features = (x.shape[-1],)
    scale = self.param('scale', nn.initializers.ones, features, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    dtype = self.dtype or x.dtype
    if not self.use_running_average and _fused_gelu(self.act, x):
      shift = jnp.zeros(features, jnp.float32) if shift is None else shift.astype(jnp.float32)
      y, mean, var = gelu_normalize_batch(x, shift, scale, bias, self.epsilon)
    else:
      if shift is not None:
        x = x + shift.astype(x.dtype)
      if self.act is not None:
        x = activations.activation(self.act)(x)
      if self.use_running_average:
        inv = lax.rsqrt(ra_var.value + self.epsilon)
        y = (x.astype(jnp.float32) - ra_mean.value) * (inv * scale) + bias
        return y.astype(dtype)
      y, mean, var = normalize_batch(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y.astype(dtype)
