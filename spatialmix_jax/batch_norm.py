"""Batch normalisation over every axis but the last, with a hand-written backward pass.

Same variables, defaults and forward arithmetic as `flax.linen.BatchNorm` (scale and bias in
`params`, running `mean` and `var` in `batch_stats`; statistics in float32 as E[x²] − E[x]²,
clipped at 0), so checkpoints and results carry over. What differs is the gradient: autodiff
of the normalisation leaves XLA:CPU a chain of reductions and elementwise passes through the
mean and variance; the closed form

  dx = scale·inv·(dy − mean(dy) − x̂·mean(dy·x̂)),  dscale = Σ dy·x̂,  dbias = Σ dy

needs one reduction pass over (dy, x) and one elementwise pass, as PyTorch's kernel does.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


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


class BatchNorm(nn.Module):
  """BatchNorm over NHWC (or NC) inputs; `momentum` weights the running average, as in flax."""
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    features = (x.shape[-1],)
    scale = self.param('scale', nn.initializers.ones, features, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    dtype = self.dtype or x.dtype
    if self.use_running_average:
      inv = lax.rsqrt(ra_var.value + self.epsilon)
      y = (x.astype(jnp.float32) - ra_mean.value) * (inv * scale) + bias
      return y.astype(dtype)
    y, mean, var = normalize_batch(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y.astype(dtype)
