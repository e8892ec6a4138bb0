"""The native CPU depthwise kernel (csrc/depthwise_cpu.cc) behind `jax.ffi`: its build, cached
in the project's cache folder (`cache.py`), and its custom VJP.

The C++ source is compiled with the system compiler (`$CXX`, else g++) on first use, keyed by
the source, the flags, the JAX version and the CPU's feature flags (it is built with
-march=native), into a file renamed into place so that concurrent processes never load a torn
one. Where the build fails (no compiler, no headers, not Linux) `available()` is False and
`error()` says why; a cache that cannot be written is the user's to fix and raises.
The caller (`depthwise.py`) owns the geometry: output size and 'SAME' padding.
"""

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading

import jax
import jax.numpy as jnp

from spatialmix_jax import cache

_SOURCE = os.path.join(os.path.dirname(__file__), 'csrc', 'depthwise_cpu.cc')
_TARGETS = {
    'fwd': 'SpatialmixDepthwiseFwd',
    'bwd_input': 'SpatialmixDepthwiseBwdInput',
    'bwd_kernel': 'SpatialmixDepthwiseBwdKernel',
}
_lock = threading.Lock()
_state = {}  # 'ok': bool, 'error': str


def _cpu_signature():
  # -march=native code must not be reused by a different CPU sharing the cache directory.
  try:
    with open('/proc/cpuinfo') as f:
      return next((line for line in f if line.startswith('flags')), '')
  except OSError:
    return platform.processor()


def _build():
  """Compiles the kernel (or reuses the cached build) and registers its FFI targets."""
  if os.environ.get('SPATIALMIX_NO_NATIVE'):
    raise RuntimeError('disabled by SPATIALMIX_NO_NATIVE')
  if platform.system() != 'Linux':
    raise RuntimeError('only built on Linux')
  with open(_SOURCE, 'rb') as f:
    source = f.read()
  compiler = os.environ.get('CXX', 'g++')
  flags = ['-std=c++20', '-O3', '-march=native', '-shared', '-fPIC', '-w',
           '-I', jax.ffi.include_dir()]
  key = hashlib.sha256(b'\0'.join(
      [source, compiler.encode(), ' '.join(flags).encode(), jax.__version__.encode(),
       _cpu_signature().encode()])).hexdigest()[:16]
  lib_path = os.path.join(cache.root(), f'depthwise_cpu-{key}.so')
  if not os.path.exists(lib_path):
    cache_dir = cache.writable_dir()
    # Build under a private name and rename: concurrent processes never load a torn file.
    fd, tmp_path = tempfile.mkstemp(suffix='.so', dir=cache_dir)
    os.close(fd)
    try:
      proc = subprocess.run([compiler, *flags, _SOURCE, '-o', tmp_path],
                            capture_output=True, text=True, timeout=300, check=False)
      if proc.returncode:
        raise RuntimeError(f'{compiler} failed: {proc.stderr.strip()[-2000:]}')
      os.replace(tmp_path, lib_path)
    finally:
      if os.path.exists(tmp_path):
        os.unlink(tmp_path)
  lib = ctypes.cdll.LoadLibrary(lib_path)
  for name, symbol in _TARGETS.items():
    jax.ffi.register_ffi_target(f'spatialmix_depthwise_{name}',
                                jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu')


def available():
  """Whether the native CPU kernel is built and registered (builds it on first call)."""
  with _lock:
    if 'ok' not in _state:
      try:
        _build()
        _state['ok'] = True
      except cache.CacheDirError:
        raise  # the user's to fix (one line naming the variable), not a reason to run slower
      except Exception as e:  # pylint: disable=broad-except
        # Any failure (no compiler, read-only cache, missing headers) just means the
        # pure-XLA implementations are used; the reason stays available for errors.
        _state.update(ok=False, error=f'{type(e).__name__}: {e}')
        logging.info('Native depthwise kernel unavailable: %s', _state['error'])
    return _state['ok']


def error():
  return _state.get('error', '')


def _call(name, out_shape, a, b, stride, pad_h, pad_w):
  return jax.ffi.ffi_call(
      f'spatialmix_depthwise_{name}', jax.ShapeDtypeStruct(out_shape, jnp.float32),
      vmap_method='sequential')(a, b, stride=stride, pad_h=pad_h, pad_w=pad_w)


def _flat_kernel(kernel):
  return kernel.astype(jnp.float32).reshape(*kernel.shape[:2], kernel.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def depthwise(x, kernel, stride, out_hw, pads):
  """'SAME' depthwise conv of NHWC `x` with a (k, k, 1, C*d) kernel; `out_hw` is the output
  (height, width) and `pads` the (top, left) padding, both as `lax` computes them."""
  out_shape = (x.shape[0], *out_hw, kernel.shape[-1])
  y = _call('fwd', out_shape, x.astype(jnp.float32), _flat_kernel(kernel), stride, *pads)
  return y.astype(jnp.result_type(x, kernel))


def _depthwise_fwd(x, kernel, stride, out_hw, pads):
  return depthwise(x, kernel, stride, out_hw, pads), (x, kernel)


def _depthwise_bwd(stride, out_hw, pads, res, g):
  del out_hw  # g has the output's shape
  x, kernel = res
  x32, w, g = x.astype(jnp.float32), _flat_kernel(kernel), g.astype(jnp.float32)
  dx = _call('bwd_input', x.shape, g, w, stride, *pads)
  # Unused (frozen kernel) -> XLA drops this call: FFI calls here have no side effects.
  dw = _call('bwd_kernel', w.shape, x32, g, stride, *pads)
  return dx.astype(x.dtype), dw.reshape(kernel.shape).astype(kernel.dtype)


depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)
