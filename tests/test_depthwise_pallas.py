"""Pallas depthwise kernels, run in interpret mode on CPU, against lax's grouped convolution
(small odd shapes, and the kernel gradient at the ImageNet ConvMixers' kernel sizes and
widths); the single-pass kernel gradient; the frozen-kernel gradient; their GPU/TPU
lowerings; and how 'auto' reads its table."""

import functools
import json
import os
import tomllib

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import depthwise_ops
from configs import base
from conftest import REPO_ROOT
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.kernels import native
from spatialmix_jax.kernels import depthwise_pallas
from spatialmix_jax.modeling import freezing
from spatialmix_jax.modeling import models

# (batch, height, width, channels). With the GPU tiling (power-of-two tiles, 64-channel
# blocks, up to 8 rows per program): 19 channels pad to a 32-wide block and 18 columns to
# 32; 130 channels span three blocks, the last one partly padding, and 12 rows make two
# row blocks. With the TPU tiling: 19 channels are one full-width block, 130 need two
# 128-lane blocks, and the 3 images of the last shape share one block.
_ODD = (2, 7, 18, 19)
_WIDE = (1, 12, 5, 130)
_ALIGNED = (3, 4, 8, 64)

_CASES = [
    # (tiling, shape, k, depth multiplier)
    *[('gpu', _ODD, k, 1) for k in (1, 3, 4, 5, 7, 8)],
    ('tpu', _ODD, 4, 1),
    ('tpu', _ODD, 5, 1),
    ('gpu', _WIDE, 3, 1),
    ('tpu', _WIDE, 4, 1),
    ('tpu', _WIDE, 9, 1),
    ('gpu', _ALIGNED, 5, 1),
    ('tpu', _ALIGNED, 5, 1),
    ('gpu', (2, 5, 6, 3), 3, 2),
]


@pytest.fixture
def tiling(request, monkeypatch):
  """Runs the interpreted kernels with the block layout the named backend would use."""
  monkeypatch.setattr(depthwise_pallas, '_INTERPRET_TILING',
                      depthwise_pallas.TILINGS[request.param])
  return request.param


def _reference(x, kernel):
  return lax.conv_general_dilated(
      x, kernel, window_strides=(1, 1), padding='SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1], precision=lax.Precision.HIGHEST)


def _inputs(shape, k, d, dtype=jnp.float32):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, shape).astype(dtype)
  kernel = jax.random.normal(kk, (k, k, 1, shape[-1] * d)).astype(dtype)
  # A random cotangent (not sum()) so a gradient wrong at one position cannot cancel out.
  cotangent = jax.random.normal(kg, (*shape[:3], shape[-1] * d)).astype(dtype)
  return x, kernel, cotangent


def _value_and_grads(fn, x, kernel, cotangent):
  y, vjp = jax.vjp(fn, x, kernel)
  return (y, *vjp(cotangent))


def _pallas(x, kernel):
  return depthwise.depthwise_conv(x, kernel, impl='pallas')


def _case_id(case):
  tiling, shape, k, d = case
  return f'{tiling}-{"x".join(map(str, shape))}-k{k}-d{d}'


@pytest.mark.parametrize('tiling,shape,k,d', _CASES, indirect=['tiling'],
                         ids=map(_case_id, _CASES))
def test_float32_matches_stock_conv_with_gradients(tiling, shape, k, d):
  x, kernel, cotangent = _inputs(shape, k, d)
  got = _value_and_grads(jax.jit(_pallas), x, kernel, cotangent)
  want = _value_and_grads(_reference, x, kernel, cotangent)
  for name, g, w in zip(('value', 'd/dx', 'd/dkernel'), got, want):
    assert g.shape == w.shape and g.dtype == w.dtype, name
    # Both sides sum the same float32 products in different orders; the absolute term is
    # relative to the largest entry because cancellation makes single entries tiny.
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * float(jnp.abs(w).max()),
                               err_msg=f'{tiling} {name}')


@pytest.mark.parametrize('tiling', ['gpu', 'tpu'], indirect=True)
def test_bfloat16_accumulates_in_float32(tiling):
  x, kernel, cotangent = _inputs(_ODD, 4, 1, jnp.bfloat16)
  got = _value_and_grads(jax.jit(_pallas), x, kernel, cotangent)
  # The reference sees the same bfloat16 values, exactly, in float32.
  want = _value_and_grads(_reference, *(a.astype(jnp.float32) for a in (x, kernel,
                                                                         cotangent)))
  for name, g, w in zip(('value', 'd/dx', 'd/dkernel'), got, want):
    assert g.dtype == jnp.bfloat16, name
    # With float32 accumulation the only bfloat16 error is the final rounding of each
    # result, at most half an ulp: 2^-8 of its magnitude (8 significand bits). Kernels
    # that accumulate in bfloat16 break this bound on about half the entries of the value
    # and of the kernel gradient (tried by editing the kernels), so it tells them apart.
    np.testing.assert_allclose(g.astype(jnp.float32), w, rtol=2.0**-8,
                               atol=1e-5 * float(jnp.abs(w).max()),
                               err_msg=f'{tiling} {name}')


# The ImageNet ConvMixers' depthwise layers: ConvMixer-768/32 (k 7) and ConvMixer-1536/20
# (k 9), whose 32x32 maps are cut to 2 x 16 x 16 so that interpret mode takes seconds. With
# the GPU tiling that is two 8-row blocks and 12 or 24 channel blocks per image; with the
# TPU tiling both images share one program, so its image loop runs twice.
_CONVMIXER_LAYERS = [(7, 768), (9, 1536)]


@functools.cache
def _convmixer_layer_case(k, channels):
  """bfloat16 (x, kernel, cotangent) and xla's kernel gradient: the stock conv's vjp of
  exactly these bfloat16 values, in float32. Shared by both tilings' tests."""
  x, kernel, cotangent = _inputs((2, 16, 16, channels), k, 1, jnp.bfloat16)
  want = jax.vjp(_reference, x.astype(jnp.float32), kernel.astype(jnp.float32))[1](
      cotangent.astype(jnp.float32))[1]
  return x, kernel, cotangent, want


@pytest.mark.parametrize('tiling', ['gpu', 'tpu'], indirect=True)
@pytest.mark.parametrize('k,channels', _CONVMIXER_LAYERS)
def test_bfloat16_kernel_gradient_at_convmixer_sizes(tiling, k, channels):
  x, kernel, cotangent, want = _convmixer_layer_case(k, channels)
  got = jax.jit(lambda x, kernel, g: jax.vjp(_pallas, x, kernel)[1](g)[1])(x, kernel, cotangent)
  assert got.dtype == jnp.bfloat16
  # Each entry sums 2 * 16 * 16 float32 products; rounding the sum to bfloat16 (8
  # significand bits) errs by at most half an ulp, 2^-8 of its magnitude. The float32 sums
  # themselves differ by summation order, about 2^-24 * sqrt(512) of the sum of |products|:
  # negligible against the rtol except where entries cancel to near zero, which the atol
  # (1e-5 of the largest entry, ~1e-4 of the product scale of unit normals) covers.
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=2.0**-8,
                             atol=1e-5 * float(jnp.abs(want).max()), err_msg=tiling)


def _kernel_grad_loads(k):
  """Per (sub)jaxpr of the kernel-gradient kernel: (loads of the input, loads of g)."""
  x, kernel, cotangent = _inputs(_ODD, k, 1)
  jaxpr = jax.make_jaxpr(lambda a, b, g: jax.vjp(_pallas, a, b)[1](g))(x, kernel, cotangent)
  calls = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name == 'pallas_call'
           and e.params['name'] == 'depthwise_kernel_grad']
  assert len(calls) == 1
  kernel_jaxpr = calls[0].params['jaxpr']
  input_shape, g_shape = (v.aval.shape for v in kernel_jaxpr.invars[:2])
  assert input_shape != g_shape  # so a load's ref shape tells which it reads
  loads = []
  for sub in _jaxprs(kernel_jaxpr):
    shapes = [e.invars[0].aval.shape for e in sub.eqns if e.primitive.name == 'get']
    loads.append((shapes.count(input_shape), shapes.count(g_shape)))
  return loads


def _jaxprs(jaxpr):
  yield jaxpr
  for eqn in jaxpr.eqns:
    for sub in jax.core.jaxprs_in_params(eqn.params):
      yield from _jaxprs(sub)


def _eqns(jaxpr):
  for sub in _jaxprs(jaxpr):
    yield from sub.eqns


@pytest.mark.parametrize('k', [3, 9])
def test_kernel_gradient_reads_each_output_gradient_row_once(k):
  # The kernel's loop body that reads a row of g must read it once and, beside it, every
  # tap's window of the input; no other body reads g. (A k*k-pass kernel has k*k bodies,
  # each with one g read and one input read.)
  loads = _kernel_grad_loads(k)
  assert sum(g for _, g in loads) == 1, loads
  assert (k * k, 1) in loads, loads


def _pallas_call_names(jaxpr):
  names = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'pallas_call':
      names.append(eqn.params['name'])
    for sub in jax.core.jaxprs_in_params(eqn.params):
      names += _pallas_call_names(sub)
  return names


def test_frozen_kernel_never_computes_the_kernel_gradient():
  x, kernel, cotangent = _inputs(_ODD, 3, 1)

  def loss(a, b):
    return jnp.vdot(_pallas(a, b), cotangent)

  # As in a frozen-spatial train step: the kernel is an input but not differentiated.
  frozen = _pallas_call_names(jax.make_jaxpr(jax.grad(loss, argnums=0))(x, kernel).jaxpr)
  learned = _pallas_call_names(
      jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, kernel).jaxpr)
  assert 'depthwise_kernel_grad' not in frozen
  assert 'depthwise_correlate' in frozen  # the input gradient is still there
  assert 'depthwise_kernel_grad' in learned  # so the check above can see the call
  # And the program a TPU would compile has no kernel-gradient kernel either.
  hlo = jax.jit(jax.grad(loss)).trace(x, kernel).lower(lowering_platforms=('tpu',))
  assert 'depthwise_kernel_grad' not in hlo.as_text()


def test_chans_mode_convmixer_step_has_no_kernel_gradient():
  mc = base.get_config().model
  mc.update(width=8, depth=1, kernel_size=3, patch_size=2, depthwise_impl='pallas')
  model = models.create_model(mc, num_classes=4, num_channels=3, mean=(0.5,), std=(0.25,))
  x = jnp.ones((2, 8, 8, 3))
  weights, batch_stats = freezing.split_variables(
      jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x))

  def kernels_of_step(mode):
    # The train step's split: gradients of the trainable collections, the rest closed over.
    frozen_names = freezing.frozen_collections(mode, weights)
    frozen = {c: w for c, w in weights.items() if c in frozen_names}
    trainable = {c: w for c, w in weights.items() if c not in frozen_names}

    def grads(trainable, frozen, batch_stats):
      def loss(t):
        out, _ = model.apply({**t, **frozen, 'batch_stats': batch_stats}, x, train=True,
                             mutable=['batch_stats'])
        return out.sum()
      return jax.grad(loss)(trainable)

    return _pallas_call_names(jax.make_jaxpr(grads)(trainable, frozen, batch_stats).jaxpr)

  assert 'depthwise_kernel_grad' not in kernels_of_step('chans')
  assert 'depthwise_kernel_grad' in kernels_of_step('full')


@pytest.mark.parametrize('k,channels', _CONVMIXER_LAYERS)
@pytest.mark.parametrize('platform', ['cuda', 'tpu'])
def test_convmixer_layers_lower_for_triton_and_mosaic(platform, k, channels):
  # The full-size layers (batch 64, 32x32 maps, bfloat16): the single-pass kernel gradient
  # keeps k*k = 49 or 81 accumulators in its loops' carry. Shapes only, nothing computed.
  backend = {'cuda': 'gpu', 'tpu': 'tpu'}[platform]
  x = jax.ShapeDtypeStruct((64, 32, 32, channels), jnp.bfloat16)
  kernel = jax.ShapeDtypeStruct((k, k, 1, channels), jnp.bfloat16)

  def fwd_bwd(a, b, g):
    y, vjp = jax.vjp(functools.partial(depthwise_pallas.depthwise_conv_pallas,
                                       backend=backend), a, b)
    return y, vjp(g)

  text = jax.jit(fwd_bwd).trace(x, kernel, x).lower(lowering_platforms=(platform,)).as_text()
  assert text.count({'cuda': 'xla.gpu.triton', 'tpu': 'tpu_custom_call'}[platform]) == 3


@pytest.mark.parametrize('platform', ['cuda', 'tpu'])
def test_kernels_lower_for_triton_and_mosaic(platform):
  # Runs Pallas's own GPU (Triton IR) and TPU (Mosaic MLIR) lowerings of all three
  # kernels, without the hardware: they reject unsupported ops, tile shapes and blocks.
  # The backend compilers behind them (Triton to PTX, Mosaic to TPU code) do not run here.
  backend = {'cuda': 'gpu', 'tpu': 'tpu'}[platform]
  for dtype in (jnp.float32, jnp.bfloat16):
    x, kernel, cotangent = _inputs(_ODD, 4, 1, dtype)

    def fwd_bwd(a, b, backend=backend):
      y, vjp = jax.vjp(lambda u, v: depthwise_pallas.depthwise_conv_pallas(
          u, v, backend=backend), a, b)
      return y, vjp(cotangent)

    text = jax.jit(fwd_bwd).trace(x, kernel).lower(lowering_platforms=(platform,)).as_text()
    target = {'cuda': 'xla.gpu.triton', 'tpu': 'tpu_custom_call'}[platform]
    assert text.count(target) == 3, (platform, dtype)


def test_unsupported_stride_is_a_one_line_error_and_auto_avoids_it():
  x, kernel, _ = _inputs(_ODD, 3, 1)
  with pytest.raises(ValueError, match="stride 1 only.*'xla'"):
    depthwise.depthwise_conv(x, kernel, stride=2, impl='pallas')
  table = {'backends': {'gpu': {'shape_classes': {'small_kernel': {
      'fwd_bwd_ms': {'xla': 3.0, 'pallas': 1.0, 'shift': 2.0}}}}}}
  with pytest.MonkeyPatch.context() as m:
    m.setattr(depthwise, 'auto_table', lambda: table)
    assert depthwise.resolve_impl('auto', x.shape, kernel.shape, 'gpu', 1) == 'pallas'
    assert depthwise.resolve_impl('auto', x.shape, kernel.shape, 'gpu', 2) == 'shift'


def test_tpu_rejects_images_too_large_for_vmem():
  reason = depthwise_pallas.unsupported_reason((1, 224, 224, 128), (7, 7, 1, 128), 1, 'tpu')
  assert 'VMEM' in reason and "'xla'" in reason
  assert depthwise_pallas.unsupported_reason((128, 32, 32, 128), (8, 8, 1, 128), 1,
                                             'tpu') is None


def test_auto_keeps_stock_op_on_unmeasured_backends():
  table = depthwise.auto_table()['backends']
  for backend in ('gpu', 'tpu', 'some_new_backend'):
    assert backend not in table  # when this fails, measure and update the tests
    assert depthwise.resolve_impl('auto', (8, 16, 16, 32), (5, 5, 1, 32), backend) == 'xla'


def test_auto_on_cpu_picks_fastest_runnable_impl_of_the_table(monkeypatch):
  classes = depthwise.auto_table()['backends']['cpu']['shape_classes']
  shapes = {'small_kernel': ((8, 16, 16, 32), (5, 5, 1, 32)),
            'large_kernel': ((8, 16, 16, 32), (8, 8, 1, 32)),
            'depth_multiplier': ((8, 16, 16, 16), (3, 3, 1, 144))}
  assert set(shapes) == set(classes)
  for native_ok in (True, False):
    monkeypatch.setattr(native, '_state',
                        {'ok': native_ok, 'error': 'not built in this test'})
    for name, (x_shape, kernel_shape) in shapes.items():
      assert depthwise.shape_class(x_shape, kernel_shape) == name
      timings = {i: ms for i, ms in classes[name]['fwd_bwd_ms'].items()
                 if native_ok or i != 'native'}
      assert depthwise.resolve_impl('auto', x_shape, kernel_shape, 'cpu') == min(
          timings, key=timings.get)


def test_auto_table_is_regenerated_from_committed_benchmark_and_shipped():
  table = depthwise.auto_table()['backends']['cpu']
  source = os.path.join(REPO_ROOT, table['provenance']['source'])
  with open(source) as f:
    entry = depthwise_ops.auto_table_entry(json.load(f), source)
  # No number in the table that the benchmark file does not give.
  assert entry['shape_classes'] == table['shape_classes']
  with open(os.path.join(REPO_ROOT, 'pyproject.toml'), 'rb') as f:
    package_data = tomllib.load(f)['tool']['setuptools']['package-data']['spatialmix_jax.kernels']
  assert os.path.basename(depthwise._AUTO_TABLE) in package_data
