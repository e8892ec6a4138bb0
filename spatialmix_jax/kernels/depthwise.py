"""Depthwise (spatial-mixing) convolution: one function, several implementations.

`depthwise_conv(x, kernel, stride=..., impl=...)` computes a 'SAME'-padded depthwise
convolution of NHWC images `x` (C channels) with a kernel of shape (k, k, 1, C * d): output
channel `o` filters input channel `o // d` (depth multiplier `d`), as
`lax.conv_general_dilated(..., feature_group_count=C)` does.

Implementations (all agree with 'xla' in value and in both gradients):

* 'xla':   the stock grouped convolution. The reference, and the right choice on GPU/TPU,
           but on XLA:CPU it is 20-40x slower than PyTorch for fwd+bwd.
* 'shift': k*k shifted multiply-adds in one fused loop, with a custom VJP: the input
           gradient is another shift-and-add (correlation of the stride-dilated output
           gradient with the flipped kernel) and the kernel gradient is k*k reductions,
           scanned over batch chunks so each chunk's working set stays in L2.
* 'fft':   pointwise products of rfft2 spectra; its cost does not grow with k, so it
           pays off for large kernels. Plain autodiff.
* 'native': CPU only. A C++ kernel (csrc/depthwise_cpu.cc) behind `jax.ffi`
           (`depthwise_native.py`), compiled with the system C++ compiler on first use into
           the project's cache folder. Where that fails (no compiler, no headers,
           non-CPU backend) 'auto' never picks it and asking for it explicitly raises with
           the compiler's message.
* 'pallas': Pallas kernels for GPU (Triton) and TPU (Mosaic), stride 1 only
           (`depthwise_pallas.py`); elsewhere they run in interpret mode, for tests.

'auto' takes the fastest implementation this backend can run according to the measured
table `depthwise_auto.json` (see `auto_table`), and 'xla' on a backend the table lacks.

Arithmetic is float32 whatever the input dtype; the result has the inputs' dtype.
"""

import functools
import json
import os

import jax
from jax import lax
import jax.numpy as jnp

from spatialmix_jax.kernels import depthwise_native
from spatialmix_jax.kernels import native
from spatialmix_jax.kernels import depthwise_pallas
from spatialmix_jax.infra.errors import ConfigError

IMPLS = ('xla', 'shift', 'fft', 'native', 'pallas')

# Working-set budget (bytes of one batch chunk of padded x plus output gradient) for the
# scanned kernel gradient: half of the 1 MiB per-core L2 of the machines measured here.
_DW_CHUNK_BYTES = 1 << 19


def resolve_impl(impl, x_shape=None, kernel_shape=None, backend=None, stride=1):
  """Returns the concrete implementation name for `impl` ('auto' or one of IMPLS)."""
  if impl == 'auto':
    return _auto_impl(x_shape, kernel_shape, backend or jax.default_backend(), stride)
  # An implementation named by the config that cannot run here is the user's choice to change.
  if impl not in IMPLS:
    raise ConfigError(
        f'Unknown depthwise_impl {impl!r}; choose one of {("auto",) + IMPLS}.')
  if impl == 'native':
    if backend not in (None, 'cpu'):
      raise ConfigError(f"depthwise_impl 'native' is CPU-only; backend is {backend!r}.")
    if not native.available():
      raise ConfigError(f"depthwise_impl 'native' is unavailable ({native.error()}); choose "
                        "another model.depthwise_impl (auto picks one that runs).")
  if impl == 'pallas' and x_shape is not None and kernel_shape is not None:
    reason = depthwise_pallas.unsupported_reason(x_shape, kernel_shape, stride,
                                                 backend or jax.default_backend())
    if reason:
      raise ConfigError(reason)
  return impl


_AUTO_TABLE = os.path.join(os.path.dirname(__file__), 'depthwise_auto.json')


@functools.cache
def auto_table():
  """Measured fwd+bwd ms per backend, shape class and impl, with their provenance.

  Written by `benchmarks/depthwise_ops.py --update-auto-table` from its results file;
  shipped as package data. 'auto' never uses a number that is not in it.
  """
  with open(_AUTO_TABLE) as f:
    return json.load(f)


def shape_class(x_shape, kernel_shape):
  """The auto table's row for a conv: 'depth_multiplier' (d > 1), else 'large_kernel'
  (k >= 7) or 'small_kernel'; 'small_kernel' when the shapes are unknown."""
  if kernel_shape is None or x_shape is None:
    return 'small_kernel'
  if kernel_shape[-1] > x_shape[-1]:
    return 'depth_multiplier'
  return 'large_kernel' if max(kernel_shape[:2]) >= 7 else 'small_kernel'


def _auto_impl(x_shape, kernel_shape, backend, stride):
  row = auto_table()['backends'].get(backend, {}).get('shape_classes', {}).get(
      shape_class(x_shape, kernel_shape))
  if row is None:
    # Nothing measured here (GPU and TPU so far): the stock op is the safe default.
    return 'xla'
  timings = row['fwd_bwd_ms']

  def runnable(impl):
    try:
      resolve_impl(impl, x_shape, kernel_shape, backend, stride)
    except ConfigError:
      return False
    return True

  return min((i for i in IMPLS if i in timings and runnable(i)), key=timings.get,
             default='xla')


def _same_pads(size, k, stride):
  """(output size, low pad, high pad) of lax's 'SAME' padding along one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return out, total // 2, total - total // 2


def _split_kernel(kernel, channels):
  """(k, k, 1, C*d) kernel -> float32 (k, k, C) if d == 1 else (k, k, C, d), and d.

  With d > 1 the input gets a trailing unit axis instead (see `_expand`), so that
  broadcasting does the channel repeat inside the fused loops rather than materialising
  a d-times larger input. (Moving d before C, so that XLA vectorises over channels, was
  not measurably faster: it costs transposes of g and y.)
  """
  k_h, k_w, _, out_channels = kernel.shape
  d = out_channels // channels
  w = kernel.astype(jnp.float32).reshape(k_h, k_w, channels, d)
  return (w[..., 0] if d == 1 else w), d


def _expand(x, d):
  return x if d == 1 else x[..., None]


def _window(a, start_h, start_w, size_h, size_w, stride):
  """a[:, start_h::stride][:size_h] (same for w), other axes whole."""
  limit = list(a.shape)
  limit[1] = start_h + (size_h - 1) * stride + 1
  limit[2] = start_w + (size_w - 1) * stride + 1
  start = [0] * a.ndim
  start[1], start[2] = start_h, start_w
  strides = [1] * a.ndim
  strides[1] = strides[2] = stride
  return lax.slice(a, start, limit, strides)


def _shift_sum(a, w, out_h, out_w, stride):
  """out[n, i, j] = sum_{p, q} a[n, i*stride + p, j*stride + q] * w[p, q]."""
  acc = None
  for p in range(w.shape[0]):
    for q in range(w.shape[1]):
      term = _window(a, p, q, out_h, out_w, stride) * w[p, q]
      acc = term if acc is None else acc + term
  return acc


def _pad_hw(a, pads_h, pads_w, interior=0):
  config = [(0, 0, 0)] * a.ndim
  config[1] = (*pads_h, interior)
  config[2] = (*pads_w, interior)
  return lax.pad(a, jnp.zeros((), a.dtype), config)


def _chunk_size(n, bytes_per_example):
  """Largest divisor of n whose chunk fits the kernel-gradient working-set budget."""
  limit = max(1, _DW_CHUNK_BYTES // max(bytes_per_example, 1))
  return max(c for c in range(1, min(n, limit) + 1) if n % c == 0)


def _shift_forward(x, kernel, stride):
  n, h, wd, c = x.shape
  k_h, k_w = kernel.shape[:2]
  w, d = _split_kernel(kernel, c)
  out_h, lo_h, hi_h = _same_pads(h, k_h, stride)
  out_w, lo_w, hi_w = _same_pads(wd, k_w, stride)
  xp = _pad_hw(_expand(x.astype(jnp.float32), d), (lo_h, hi_h), (lo_w, hi_w))
  y = _shift_sum(xp, w, out_h, out_w, stride)
  return y.reshape(n, out_h, out_w, c * d).astype(jnp.result_type(x, kernel))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _shift_depthwise(x, kernel, stride):
  return _shift_forward(x, kernel, stride)


def _shift_depthwise_fwd(x, kernel, stride):
  return _shift_forward(x, kernel, stride), (x, kernel)


def _shift_depthwise_bwd(stride, res, g):
  x, kernel = res
  n, h, wd, c = x.shape
  k_h, k_w = kernel.shape[:2]
  w, d = _split_kernel(kernel, c)
  out_h, lo_h, hi_h = _same_pads(h, k_h, stride)
  out_w, lo_w, hi_w = _same_pads(wd, k_w, stride)
  g = g.astype(jnp.float32).reshape(n, out_h, out_w, *w.shape[2:])

  # Input gradient: dx_pad[r] = sum_p g_dilated[r - p] w[p], i.e. a stride-1 correlation
  # of the zero-dilated, (k-1)-padded gradient with the flipped kernel. The padding below
  # is shifted by the forward's low pad (negative values crop) so that the correlation
  # lands exactly on the unpadded input rows.
  def grad_pads(size, k, out, lo):
    low = k - 1 - lo
    return low, size + k - 1 - ((out - 1) * stride + 1) - low

  pads_h, pads_w = grad_pads(h, k_h, out_h, lo_h), grad_pads(wd, k_w, out_w, lo_w)
  w_flip = w[::-1, ::-1]
  if d == 1:
    gp = _pad_hw(g, pads_h, pads_w, interior=stride - 1)
    dx = _shift_sum(gp, w_flip, h, wd, 1)
  else:
    # Contract the d copies tap by tap first, then shift the k*k C-channel results: XLA
    # does not fuse k*k shifted windows of the d-times larger g (it materialises each,
    # 5-10x slower), while the shifts of these d-times smaller arrays fuse fine.
    taps = (g[None] * w_flip.reshape(k_h * k_w, 1, 1, 1, c, d)).sum(axis=-1)
    taps = _pad_hw(taps.reshape(k_h * k_w * n, out_h, out_w, c), pads_h, pads_w,
                   interior=stride - 1).reshape(k_h, k_w, n, h + k_h - 1, wd + k_w - 1, c)
    dx = None
    for p in range(k_h):
      for q in range(k_w):
        term = lax.slice(taps, (p, q, 0, p, q, 0),
                         (p + 1, q + 1, n, p + h, q + wd, c))[0, 0]
        dx = term if dx is None else dx + term

  # Kernel gradient: dw[p, q] = sum_{n, i, j} x_pad[n, i*s + p, j*s + q] * g[n, i, j].
  # Reading all of x and g once per tap is memory-bound; chunking over the batch keeps
  # each chunk hot in cache across the k*k taps.
  bytes_per_example = 4 * ((h + lo_h + hi_h) * (wd + lo_w + hi_w) * c
                           + out_h * out_w * c * d)
  chunk = _chunk_size(n, bytes_per_example)

  def chunk_grad(acc, xg):
    xc, gc = xg
    xp = _pad_hw(_expand(xc.astype(jnp.float32), d), (lo_h, hi_h), (lo_w, hi_w))
    taps = [
        jnp.sum(_window(xp, p, q, out_h, out_w, stride) * gc, axis=(0, 1, 2))
        for p in range(k_h) for q in range(k_w)
    ]
    return acc + jnp.stack(taps).reshape(acc.shape), None

  xs = x.reshape(n // chunk, chunk, h, wd, c)
  gs = g.reshape(n // chunk, chunk, *g.shape[1:])
  dw, _ = lax.scan(chunk_grad, jnp.zeros(w.shape, jnp.float32), (xs, gs))
  return dx.astype(x.dtype), dw.reshape(kernel.shape).astype(kernel.dtype)


_shift_depthwise.defvjp(_shift_depthwise_fwd, _shift_depthwise_bwd)


def _fft_size(n):
  """Smallest 2^a 3^b 5^c >= n: pocketfft is much faster on such sizes than on primes."""
  m = n
  while True:
    r = m
    for f in (2, 3, 5):
      while r % f == 0:
        r //= f
    if r == 1:
      return m
    m += 1


def _fft_depthwise(x, kernel, stride):
  n, h, wd, c = x.shape
  k_h, k_w = kernel.shape[:2]
  w, d = _split_kernel(kernel, c)
  out_h, lo_h, hi_h = _same_pads(h, k_h, stride)
  out_w, lo_w, hi_w = _same_pads(wd, k_w, stride)
  # Circular correlation of length P >= padded size never wraps into the outputs we keep
  # (i + p <= padded size - 1 for every kept row i and tap p), so P can be rounded up to a
  # fast FFT size; the extra zeros only extend the low/high padding.
  size_h = _fft_size(h + lo_h + hi_h)
  size_w = _fft_size(wd + lo_w + hi_w)
  xp = _pad_hw(x.astype(jnp.float32), (lo_h, size_h - h - lo_h),
               (lo_w, size_w - wd - lo_w))
  spec_x = jnp.fft.rfft2(xp, axes=(1, 2))
  wp = jnp.pad(w, [(0, size_h - k_h), (0, size_w - k_w)] + [(0, 0)] * (w.ndim - 2))
  spec_w = jnp.conj(jnp.fft.rfft2(wp, axes=(0, 1)))
  y = jnp.fft.irfft2(_expand(spec_x, d) * spec_w, s=(size_h, size_w), axes=(1, 2))
  y = _window(y, 0, 0, out_h, out_w, stride)
  return y.reshape(n, out_h, out_w, c * d).astype(jnp.result_type(x, kernel))


def prepare(impl, backend=None):
  """Builds what `impl` will need before any compute: on CPU, 'auto' and 'native' compile the
  native kernel now, so that a cache that cannot be written is a one-line error up front."""
  if impl in ('auto', 'native') and (backend or jax.default_backend()) == 'cpu':
    native.available()


def _xla_depthwise(x, kernel, stride):
  return lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding='SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


def depthwise_conv(x, kernel, *, stride=1, impl='auto'):
  """'SAME' depthwise convolution of NHWC `x` with a (k, k, 1, C*d) kernel."""
  k_h, k_w, one, out_channels = kernel.shape
  channels = x.shape[-1]
  if one != 1 or out_channels % channels:
    raise ValueError(
        f'Depthwise kernel shape {kernel.shape} does not fit {channels} input channels; '
        'expected (k, k, 1, channels * depth_multiplier).')
  impl = resolve_impl(impl, x.shape, kernel.shape, jax.default_backend(), int(stride))
  if impl == 'shift':
    return _shift_depthwise(x, kernel, int(stride))
  if impl == 'fft':
    return _fft_depthwise(x, kernel, int(stride))
  if impl == 'native':
    _, h, wd, _ = x.shape
    out_h, lo_h, _ = _same_pads(h, k_h, stride)
    out_w, lo_w, _ = _same_pads(wd, k_w, stride)
    return depthwise_native.depthwise(x, kernel, int(stride), (out_h, out_w), (lo_h, lo_w))
  if impl == 'pallas':
    return depthwise_pallas.depthwise_conv_pallas(x, kernel, stride=int(stride))
  return _xla_depthwise(x, kernel, stride)
