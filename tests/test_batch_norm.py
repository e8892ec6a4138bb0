"""The faster formulations of the models' elementwise layers compute what the stock ones do:
BatchNorm with a hand-written backward pass against flax's, GELU through erf against jax's
(erfc) form, the ConvMixer patch stem as a matmul against the strided convolution."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spatialmix_jax.modeling import activations
from spatialmix_jax.modeling import batch_norm
from spatialmix_jax.modeling import layers


def _apply(module, variables, x, train):
  if train:
    return module.apply(variables, x, mutable=['batch_stats'])
  return module.apply(variables, x), {}


@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_batch_norm_matches_flax_values_statistics_and_gradients(train, dtype):
  x = (jax.random.normal(jax.random.key(0), (6, 5, 7, 12)) * 3 + 1).astype(dtype)
  ours = batch_norm.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                              dtype=dtype)
  stock = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype)
  variables = stock.init(jax.random.key(1), x)
  # Non-trivial parameters and running statistics, the same for both.
  keys = jax.random.split(jax.random.key(2), 4)
  variables = {
      'params': {'scale': 1 + jax.random.normal(keys[0], (12,)),
                 'bias': jax.random.normal(keys[1], (12,))},
      'batch_stats': {'mean': jax.random.normal(keys[2], (12,)),
                      'var': jax.random.uniform(keys[3], (12,), minval=0.5, maxval=2.0)}}
  assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(variables)
  cotangent = jax.random.normal(jax.random.key(3), x.shape).astype(dtype)

  def loss(module, params, x):
    y, state = _apply(module, {**variables, 'params': params}, x, train)
    return jnp.sum(y.astype(jnp.float32) * cotangent.astype(jnp.float32)), (y, state)

  results = {}
  for name, module in (('ours', ours), ('stock', stock)):
    grads, (y, state) = jax.grad(functools.partial(loss, module), argnums=(0, 1),
                                 has_aux=True)(variables['params'], x)
    results[name] = (y, state, grads)
  tol = dict(rtol=2e-2, atol=2e-2) if dtype == jnp.bfloat16 else dict(rtol=1e-5, atol=1e-5)
  (y, state, grads), (y_ref, state_ref, grads_ref) = results['ours'], results['stock']
  assert y.dtype == y_ref.dtype == dtype
  np.testing.assert_allclose(np.float32(y), np.float32(y_ref), **tol)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(np.float32(a), np.float32(b), **tol)
  if dtype == jnp.float32 and train:
    # The forward arithmetic is flax's own: bitwise equal, not just close.
    np.testing.assert_array_equal(y, y_ref)


def test_gelu_through_erf_matches_jax_exact_gelu():
  x = jnp.linspace(-9.0, 9.0, 4001)
  stock = functools.partial(jax.nn.gelu, approximate=False)
  np.testing.assert_allclose(activations.gelu(x), stock(x), rtol=1e-6, atol=1e-6)
  grad = jax.vmap(jax.grad(activations.gelu))(x)
  np.testing.assert_allclose(grad, jax.vmap(jax.grad(stock))(x), rtol=1e-5, atol=1e-6)
  # Not the tanh approximation: they differ by ~1e-3 around |x| = 2.
  assert np.max(np.abs(activations.gelu(x) - jax.nn.gelu(x, approximate=True))) > 1e-4


@pytest.mark.parametrize('shape,k', [((3, 32, 32, 3), 2), ((2, 30, 29, 5), 7), ((2, 8, 8, 1), 1)])
def test_patchify_matches_the_strided_valid_convolution(shape, k):
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (k, k, shape[-1], 16))
  reference = jax.lax.conv_general_dilated(x, kernel, (k, k), 'VALID',
                                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                           precision=jax.lax.Precision.HIGHEST)
  np.testing.assert_allclose(layers.patchify(x, kernel), reference, rtol=1e-5, atol=1e-5)
  cotangent = jax.random.normal(jax.random.key(2), reference.shape)
  grads = jax.vjp(layers.patchify, x, kernel)[1](cotangent)
  grads_ref = jax.vjp(lambda a, b: jax.lax.conv_general_dilated(
      a, b, (k, k), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision=jax.lax.Precision.HIGHEST), x, kernel)[1](cotangent)
  for a, b in zip(grads, grads_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('channels', [32, 19])  # whole 16-channel vectors, and a remainder
def test_fused_native_gelu_norm_matches_gelu_then_batch_norm(monkeypatch, channels):
  # BN(gelu(a + shift)), the shift being a conv's bias handed over (`add_bias=False`).
  from spatialmix_jax.kernels import native  # pylint: disable=g-import-not-at-top
  if not native.available():
    pytest.skip(f'native kernels not built here: {native.error()}')
  # Wide enough to reach both tails of GELU (and the exp underflow below -13).
  a = jax.random.normal(jax.random.key(0), (4, 6, 5, channels)) * 4 + 0.5
  a = a.at[0, 0, 0].set(-30.0)
  module = batch_norm.BatchNorm(act='gelu')
  variables = module.init(jax.random.key(1), a)
  keys = jax.random.split(jax.random.key(2), 2)
  params = {'scale': 1 + jax.random.normal(keys[0], (channels,)),
            'bias': jax.random.normal(keys[1], (channels,))}
  cotangent = jax.random.normal(jax.random.key(3), a.shape)
  shift = jax.random.normal(jax.random.key(4), (channels,))

  def run():
    def loss(params, a, shift):
      y, state = module.apply({**variables, 'params': params}, a, shift=shift,
                              mutable=['batch_stats'])
      return jnp.sum(y * cotangent), (y, state)
    grads, (y, state) = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(
        params, a, shift)
    return y, state, grads

  fused_hlo = jax.jit(lambda a: module.apply(variables, a, shift=shift,
                                             mutable=['batch_stats'])).lower(a).as_text()
  assert 'spatialmix_gelu_norm_fwd' in fused_hlo  # the native path is the one under test
  fused = run()
  monkeypatch.setattr(batch_norm, '_fused_gelu', lambda act, x: False)
  reference = run()
  for got, want in zip(jax.tree.leaves(fused), jax.tree.leaves(reference)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_convmixer_hands_its_conv_biases_to_the_fused_norm(monkeypatch):
  # The whole ConvMixer trains the same with its mixers' biases added by the native kernel
  # as with them added by XLA before a stock GELU and BatchNorm: outputs, running statistics
  # and every gradient, the biases' included.
  from spatialmix_jax.kernels import native  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.modeling import convmixer  # pylint: disable=g-import-not-at-top
  if not native.available():
    pytest.skip(f'native kernels not built here: {native.error()}')
  model = convmixer.ConvMixer(width=19, depth=2, kernel_size=3, patch_size=2, num_classes=5)
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  labels = jnp.arange(4) % 5
  trained = {c: v for c, v in variables.items() if c != 'batch_stats'}

  def run():
    def loss(trained):
      logits, state = model.apply({**trained, 'batch_stats': variables['batch_stats']}, x,
                                  train=True, mutable=['batch_stats'])
      picked = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)
      return -jnp.mean(picked), (logits, state)
    grads, (logits, state) = jax.jit(jax.grad(loss, has_aux=True))(trained)
    return logits, state, grads

  hlo = jax.jit(lambda v: model.apply(v, x, train=True, mutable=['batch_stats'])).lower(
      variables).as_text()
  assert hlo.count('spatialmix_gelu_norm_fwd') == 1 + 2 * 2  # stem, then two per block
  fused = run()
  assert jnp.any(fused[2]['spatial']['DepthwiseConv_0']['bias'] != 0)
  monkeypatch.setattr(batch_norm, '_fused_gelu', lambda act, x: False)
  reference = run()
  for got, want in zip(jax.tree.leaves(fused), jax.tree.leaves(reference)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
