"""Initialisers: weight-init schemes and the structured families of spatial (depthwise) filters.

A scheme sets the per-weight variance from the fan-in, fan_in = prod(shape[:-1]) for HWIO
conv kernels and (in, out) dense kernels -- k² for a depthwise kernel, c_in for a pointwise one:

  torch: U(-b, b), b = 1/sqrt(fan_in) (PyTorch's default kaiming_uniform(a=sqrt(5))), so the
         per-weight variance is b²/3 = 1/(3 fan_in); biases U(±1/sqrt(fan_in)) too.
  flax:  lecun_normal (variance 1/fan_in), zero biases.

A family sets the *structure* of the depthwise filters. Every family keeps the expected
per-filter energy E||w||² = kh·kw·variance of the scheme's random init (1/3 for torch, 1 for
flax on a depthwise kernel), so comparing families changes only structure, never scale:

  random:   independent random filters from the scheme.
  same:     d random filters, repeated for every input channel: kernel[..., c*d + m] is the
            same for every c (needs the depth multiplier d).
  box:      a constant averaging filter, value sqrt(E)/sqrt(kh·kw).
  identity: a delta of height sqrt(E) at tap ((kh-1)//2, (kw-1)//2). For odd k this is the
            centre; for even k it is the tap that 'SAME' padding (pad (k-1)//2 before, k//2
            after) aligns with the output pixel, so the filter is an exact identity, unshifted.
  smooth:   random filters low-passed by a Gaussian of std `smooth_sigma` pixels (zero
            padding at the filter border), then each rescaled to the L2 norm it had before
            smoothing, so every filter keeps its own random energy.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from spatialmix_jax.infra.errors import ConfigError

FAMILIES = ('random', 'same', 'box', 'identity', 'smooth')
INIT_SCHEMES = ('torch', 'flax')


def check_spatial_init(spatial_init):
  if spatial_init not in FAMILIES:
    raise ConfigError(f'Unknown spatial_init {spatial_init!r}; choose one of {FAMILIES}.')


def check_init_scheme(init_scheme):
  if init_scheme not in INIT_SCHEMES:
    raise ConfigError(f'Unknown init_scheme {init_scheme!r}; choose one of {INIT_SCHEMES}.')


def fan_in(shape):
  return math.prod(shape[:-1])


def weight_variance(init_scheme, shape):
  """Per-weight variance of the scheme's random kernel init for `shape`."""
  check_init_scheme(init_scheme)
  return 1.0 / (3 * fan_in(shape)) if init_scheme == 'torch' else 1.0 / fan_in(shape)


def _random(init_scheme, key, shape, dtype):
  if init_scheme == 'torch':
    bound = 1.0 / math.sqrt(fan_in(shape))
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return jax.nn.initializers.lecun_normal()(key, shape, dtype)


def _gaussian_matrix(size, sigma):
  """(size, size) matrix applying a 1-D Gaussian blur with zero padding."""
  offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
  taps = np.exp(-0.5 * (offsets / sigma) ** 2)
  # Normalise by the untruncated kernel's mass so border taps lose energy to the padding
  # rather than being re-weighted.
  radius = np.arange(-size + 1, size)
  return jnp.asarray(taps / np.exp(-0.5 * (radius / sigma) ** 2).sum(), jnp.float32)


def kernel_init(spatial_init='random', init_scheme='torch', smooth_sigma=1.0,
                depth_multiplier=1):
  """Returns `init(key, shape, dtype)` for a kernel whose first two axes are spatial.

  Non-random families are meant for depthwise kernels (k, k, 1, C*d); `random` also serves
  pointwise, full-conv and dense kernels.
  """
  check_spatial_init(spatial_init)
  check_init_scheme(init_scheme)
  if spatial_init == 'smooth' and not smooth_sigma > 0:
    raise ValueError(f'smooth_sigma must be > 0 for spatial_init=smooth, got {smooth_sigma}.')
  if depth_multiplier < 1:
    raise ValueError(f'depth_multiplier must be >= 1, got {depth_multiplier}.')

  def init(key, shape, dtype=jnp.float32):
    shape = tuple(shape)
    if spatial_init == 'random':
      return _random(init_scheme, key, shape, dtype)
    kh, kw = shape[:2]
    energy = kh * kw * weight_variance(init_scheme, shape)
    if spatial_init == 'same':
      if shape[-1] % depth_multiplier:
        raise ValueError(f'Kernel shape {shape} is not a multiple of depth_multiplier '
                         f'{depth_multiplier} in its last axis.')
      base = _random(init_scheme, key, shape[:-1] + (depth_multiplier,), dtype)
      return jnp.tile(base, (1,) * (len(shape) - 1) + (shape[-1] // depth_multiplier,))
    if spatial_init == 'box':
      return jnp.full(shape, math.sqrt(energy / (kh * kw)), dtype)
    if spatial_init == 'identity':
      return jnp.zeros(shape, dtype).at[(kh - 1) // 2, (kw - 1) // 2].set(math.sqrt(energy))
    # smooth
    raw = _random(init_scheme, key, shape, jnp.float32)
    blurred = jnp.einsum('ia,jb,ab...->ij...', _gaussian_matrix(kh, smooth_sigma),
                         _gaussian_matrix(kw, smooth_sigma), raw)
    norm = lambda w: jnp.sqrt(jnp.sum(jnp.square(w), axis=(0, 1), keepdims=True))
    return (blurred * norm(raw) / jnp.maximum(norm(blurred), 1e-12)).astype(dtype)

  return init


def bias_init(init_scheme, fan_in_):
  """Bias init matching `init_scheme`; `fan_in_` is the fan-in of the layer's kernel."""
  check_init_scheme(init_scheme)
  if init_scheme == 'flax':
    return jax.nn.initializers.zeros
  bound = 1.0 / math.sqrt(fan_in_)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)
