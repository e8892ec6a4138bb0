"""Every depthwise implementation must match lax's grouped convolution, gradients included."""

import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from spatialmix_jax.infra import errors
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.kernels import native
from spatialmix_jax.kernels.depthwise import depthwise_conv

# Non-square, with an odd height so that 'SAME' padding is asymmetric for some (k, stride);
# 19 channels (and 19 * 9) exercise both the 16-wide vector loops of the native kernel
# and their remainders, as does a width of 18 (tiles of 8 output columns).
_H, _W, _C, _N = 7, 18, 19, 2

_CASES = [
    # (k, depth multiplier, stride)
    (5, 1, 1),
    (8, 1, 1),
    (3, 9, 1),
    (4, 9, 1),
    (3, 9, 2),
    (8, 1, 2),
]

_NON_REFERENCE = [i for i in depthwise.IMPLS if i != 'xla']


def _skip_if_unavailable(impl, stride=1):
  if impl == 'native' and not native.available():
    pytest.skip(f'native kernel not built here: {native.error()}')
  if impl == 'pallas' and stride != 1:
    pytest.skip('pallas is stride 1 only (tests/test_depthwise_pallas.py checks the error)')


def test_native_kernels_build_wherever_a_compiler_is_found():
  # Every native test skips when the kernels do not build, so a source that no longer compiles
  # would otherwise pass the suite silently (and every CPU run would fall back to XLA).
  import os, platform, shutil  # pylint: disable=g-import-not-at-top,multiple-imports
  compiler = shutil.which(os.environ.get('CXX', 'g++'))
  if platform.system() != 'Linux' or not compiler or os.environ.get('SPATIALMIX_NO_NATIVE'):
    pytest.skip('no C++ compiler here (or native kernels turned off)')
  assert native.available(), native.error()


def _reference(x, kernel, stride):
  return lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding='SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1], precision=lax.Precision.HIGHEST)


def _inputs(k, d, dtype=jnp.float32, seed=0):
  kx, kk = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (_N, _H, _W, _C), dtype)
  kernel = jax.random.normal(kk, (k, k, 1, _C * d), dtype)
  return x, kernel


def _value_and_grads(fn, x, kernel, cotangent):
  # A random cotangent (rather than sum()) so that a gradient which is wrong per output
  # position cannot cancel out.
  y, vjp = jax.vjp(fn, x, kernel)
  return (y, *vjp(cotangent))


def _out_shape(d, stride):
  return (_N, -(-_H // stride), -(-_W // stride), _C * d)


@functools.cache
def _reference_case(k, d, stride):
  x, kernel = _inputs(k, d)
  cotangent = jax.random.normal(jax.random.key(1), _out_shape(d, stride))
  return _value_and_grads(lambda a, b: _reference(a, b, stride), x, kernel, cotangent)


@pytest.mark.parametrize('impl', _NON_REFERENCE)
@pytest.mark.parametrize('k,d,stride', _CASES)
def test_matches_stock_conv_with_gradients(impl, k, d, stride):
  _skip_if_unavailable(impl, stride)
  x, kernel = _inputs(k, d)
  out_shape = _out_shape(d, stride)
  cotangent = jax.random.normal(jax.random.key(1), out_shape)
  want = _reference_case(k, d, stride)
  got = _value_and_grads(
      jax.jit(lambda a, b: depthwise_conv(a, b, stride=stride, impl=impl)),
      x, kernel, cotangent)
  assert got[0].shape == out_shape
  for name, g, w in zip(('value', 'd/dx', 'd/dkernel'), got, want):
    assert g.shape == w.shape and g.dtype == w.dtype, name
    # The kernel gradient sums N*H*W products: scale the tolerance with the magnitude.
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(jnp.abs(w).max()),
                               err_msg=f'{impl} {name}')


def test_stock_impl_is_the_reference():
  x, kernel = _inputs(5, 1)
  np.testing.assert_allclose(depthwise_conv(x, kernel, impl='xla'),
                             _reference(x, kernel, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('impl', depthwise.IMPLS)
def test_bfloat16_close_to_float32(impl):
  _skip_if_unavailable(impl)
  x, kernel = _inputs(3, 9, seed=2)
  xb, kb = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
  want = _reference(xb.astype(jnp.float32), kb.astype(jnp.float32), 1)
  got = jax.jit(lambda a, b: depthwise_conv(a, b, impl=impl))(xb, kb)
  assert got.dtype == jnp.bfloat16
  # Inputs are exactly representable; only the bfloat16 rounding of the output remains.
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=2e-2,
                             atol=2e-2 * float(jnp.abs(want).max()))
  grads = jax.grad(
      lambda a, b: depthwise_conv(a, b, impl=impl).astype(jnp.float32).sum(),
      argnums=(0, 1))(xb, kb)
  want_grads = jax.grad(
      lambda a, b: _reference(a, b, 1).sum(),
      argnums=(0, 1))(xb.astype(jnp.float32), kb.astype(jnp.float32))
  for g, w in zip(grads, want_grads):
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(g.astype(jnp.float32), w, rtol=2e-2,
                               atol=2e-2 * float(jnp.abs(w).max()))


def test_auto_resolves_to_a_concrete_impl():
  for backend in ('cpu', 'gpu', 'tpu'):
    for k, d in ((3, 9), (5, 1), (9, 1)):
      impl = depthwise.resolve_impl('auto', (128, 32, 32, 64), (k, k, 1, 64 * d), backend)
      assert impl in depthwise.IMPLS
  assert depthwise.resolve_impl('auto', (1, 8, 8, 4), (3, 3, 1, 4), 'gpu') == 'xla'
  x, kernel = _inputs(3, 1)
  np.testing.assert_allclose(depthwise_conv(x, kernel), _reference(x, kernel, 1),
                             rtol=1e-4, atol=1e-4)


def test_without_native_kernel_auto_falls_back_and_explicit_request_raises(monkeypatch):
  # As on a machine without a C++ compiler: the build failure is remembered, not retried.
  monkeypatch.setattr(native, '_state', {'ok': False, 'error': 'no compiler'})
  for k, d in ((3, 9), (5, 1), (8, 1)):
    impl = depthwise.resolve_impl('auto', (64, 32, 32, 16), (k, k, 1, 16 * d), 'cpu')
    assert impl in depthwise.IMPLS and impl != 'native'
  with pytest.raises(errors.ConfigError, match='no compiler'):
    depthwise.resolve_impl('native', (1, 8, 8, 4), (3, 3, 1, 4), 'cpu')
  with pytest.raises(errors.ConfigError, match='CPU-only'):
    depthwise.resolve_impl('native', (1, 8, 8, 4), (3, 3, 1, 4), 'gpu')


def test_unknown_impl_raises():
  x, kernel = _inputs(3, 1)
  with pytest.raises(ValueError, match="'shift'"):
    depthwise_conv(x, kernel, impl='winograd')


def test_kernel_shape_mismatch_raises():
  x, _ = _inputs(3, 1)
  with pytest.raises(ValueError, match='depth_multiplier'):
    depthwise_conv(x, jnp.zeros((3, 3, 1, _C + 1)), impl='shift')
