"""Freed host memory is kept for reuse (`infra/host_memory.py`): a large buffer allocated,
written and freed again and again faults its pages in once, not on every round, and the
settings apply only where they should."""

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from spatialmix_jax.infra import host_memory

_GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'

# What a train step does to host memory: a buffer larger than glibc's mmap threshold, written
# and freed, on the loop thread and on a pool thread, round after round. argv: the buffer's
# size and the distance between the bytes written (a page: all of it is faulted in).
_ROUNDS = textwrap.dedent("""
    import ctypes, json, resource, sys, threading
    from spatialmix_jax.infra import host_memory
    applied = host_memory.retain_freed_memory()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, stride = int(sys.argv[1]), int(sys.argv[2])
    def one_round():
      p = libc.malloc(size)
      for offset in range(0, size, stride):
        ctypes.memset(p + offset, 1, 1)
      libc.free(p)
    def faults():
      return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    one_round()
    worker = threading.Thread(target=one_round); worker.start(); worker.join()
    start = faults()
    for _ in range(5):
      one_round()
      worker = threading.Thread(target=one_round); worker.start(); worker.join()
    print(json.dumps({'applied': applied, 'faults_per_round': (faults() - start) / 10}))
""")


def _run_rounds(switch, size=64 << 20, stride=None):
  env = dict(os.environ, **{host_memory.ENV: switch})
  stride = stride or os.sysconf('SC_PAGESIZE')
  out = subprocess.run([sys.executable, '-c', _ROUNDS, str(size), str(stride)], env=env,
                       capture_output=True, text=True, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not _GLIBC, reason='the settings are glibc malloc options')
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
  pages = (64 << 20) // os.sysconf('SC_PAGESIZE')
  default = _run_rounds('0')
  kept = _run_rounds('1')
  assert default['applied'] == 'off' and kept['applied'] == 'retained'
  # glibc's default returns the buffer to the kernel on free: each round faults it in anew
  # (fewer faults where the kernel backs it with huge pages, never none).
  assert default['faults_per_round'] > 0.5 * pages / 512
  # Kept: the rounds after the first reuse the same pages.
  assert kept['faults_per_round'] < 0.01 * pages
  assert kept['faults_per_round'] < default['faults_per_round'] / 10


@pytest.mark.skipif(not _GLIBC, reason='the settings are glibc malloc options')
def test_a_working_set_over_2_gib_is_kept_too():
  # A deep ConvMixer on 32x32 images frees ~3 GiB at the end of a step; a trim threshold of
  # 2^31 - 1 bytes handed it back to the kernel (~725,000 faults a step, measured). Writing
  # one byte every 256 pages of a 2.25 GiB buffer keeps the test cheap: each round faults
  # ~2,300 pages in when the buffer was trimmed, none when it was kept.
  page = os.sysconf('SC_PAGESIZE')
  size, stride = (9 << 28), 256 * page
  kept = _run_rounds('1', size, stride)
  assert kept['applied'] == 'retained'
  assert kept['faults_per_round'] < 0.01 * size / stride


def test_wanted_follows_the_switch_then_the_platform(monkeypatch):
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  monkeypatch.setattr(host_memory, '_accelerator_plugin_installed', lambda: False)
  monkeypatch.setenv(host_memory.ENV, '0')
  assert not host_memory.wanted()
  monkeypatch.setenv(host_memory.ENV, '1')
  assert host_memory.wanted()
  monkeypatch.delenv(host_memory.ENV)
  assert host_memory.wanted()  # a CPU-only install
  monkeypatch.setattr(host_memory, '_accelerator_plugin_installed', lambda: True)
  assert not host_memory.wanted()  # a TPU or GPU host: buffers live on the device
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  assert host_memory.wanted()
  monkeypatch.setenv('JAX_PLATFORMS', 'tpu')
  assert not host_memory.wanted()


def test_off_applies_nothing_and_the_first_call_decides(monkeypatch):
  monkeypatch.setattr(host_memory, '_applied', None)  # as in a new process
  monkeypatch.setenv(host_memory.ENV, '0')
  assert host_memory.retain_freed_memory() == 'off'
  monkeypatch.setenv(host_memory.ENV, '1')
  assert host_memory.retain_freed_memory() == 'off'  # settings are made once, at the start
