"""The project's native CPU kernels (csrc/) behind `jax.ffi`: one shared library, built on first
use and cached in the project's cache folder (`cache.py`).

The C++ sources are compiled with the system compiler (`$CXX`, else g++), keyed by the
sources, the flags, the JAX version and the CPU's feature flags (they are built with
-march=native), into a file renamed into place so that concurrent processes never load a torn
one. Where the build fails (no compiler, no headers, not Linux) `available()` is False and
`error()` says why, and callers use their XLA formulations; a cache that cannot be written is
the user's to fix and raises. `SPATIALMIX_NO_NATIVE=1` turns the kernels off.
"""

import ctypes
import glob
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading

import jax

from spatialmix_jax.infra import cache

_CSRC = os.path.join(os.path.dirname(__file__), 'csrc')
# FFI target name (what jax.ffi.ffi_call names) -> exported handler symbol.
TARGETS = {
    'spatialmix_depthwise_fwd': 'SpatialmixDepthwiseFwd',
    'spatialmix_depthwise_bwd_input': 'SpatialmixDepthwiseBwdInput',
    'spatialmix_depthwise_bwd_kernel': 'SpatialmixDepthwiseBwdKernel',
    'spatialmix_gelu_norm_fwd': 'SpatialmixGeluNormFwd',
    'spatialmix_gelu_norm_bwd': 'SpatialmixGeluNormBwd',
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
  """Compiles the kernels (or reuses the cached build) and registers their FFI targets."""
  if os.environ.get('SPATIALMIX_NO_NATIVE'):
    raise RuntimeError('disabled by SPATIALMIX_NO_NATIVE')
  if platform.system() != 'Linux':
    raise RuntimeError('only built on Linux')
  paths = sorted(glob.glob(os.path.join(_CSRC, '*.cc')) + glob.glob(os.path.join(_CSRC, '*.h')))
  sources = []
  for path in paths:
    with open(path, 'rb') as f:
      sources.append(os.path.basename(path).encode() + b'\0' + f.read())
  compiler = os.environ.get('CXX', 'g++')
  flags = ['-std=c++20', '-O3', '-march=native', '-shared', '-fPIC', '-w',
           '-I', jax.ffi.include_dir(), '-I', _CSRC]
  key = hashlib.sha256(b'\0'.join(
      sources + [compiler.encode(), ' '.join(flags).encode(), jax.__version__.encode(),
                 _cpu_signature().encode()])).hexdigest()[:16]
  lib_path = os.path.join(cache.root(), f'spatialmix_cpu-{key}.so')
  if not os.path.exists(lib_path):
    cache_dir = cache.writable_dir()
    # Build under a private name and rename: concurrent processes never load a torn file.
    fd, tmp_path = tempfile.mkstemp(suffix='.so', dir=cache_dir)
    os.close(fd)
    try:
      proc = subprocess.run([compiler, *flags, *[p for p in paths if p.endswith('.cc')],
                             '-o', tmp_path],
                            capture_output=True, text=True, timeout=300, check=False)
      if proc.returncode:
        raise RuntimeError(f'{compiler} failed: {proc.stderr.strip()[-2000:]}')
      os.replace(tmp_path, lib_path)
    finally:
      if os.path.exists(tmp_path):
        os.unlink(tmp_path)
  lib = ctypes.cdll.LoadLibrary(lib_path)
  for name, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu')


def available():
  """Whether the native CPU kernels are built and registered (builds them on first call)."""
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
        logging.info('Native CPU kernels unavailable: %s', _state['error'])
    return _state['ok']


def error():
  return _state.get('error', '')
