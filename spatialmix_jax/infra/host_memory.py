"""Keeps the host memory a CPU training step frees for the next step to reuse.

XLA:CPU allocates each step's buffers when the step starts and frees them when it ends. With
glibc's default settings, every allocation above its mmap threshold is returned to the kernel
when freed, and thread arenas hand their emptied heaps back too, so the next step faults the
whole working set in again, page by page, each page zeroed by the kernel. For the ConvMixer
128/4 k5 p2 at batch 128 that is ~390 MiB and ~100,000 page faults a step, about a third of a
train step on a 2-core machine (`benchmarks/results/end_to_end_cpu.md` has the measurement).
One arena, no mmap'd chunks and no trimming make every step after the first reuse the pages
of the one before: no faults, the memory high-water mark stays what the step needs.

It is process-wide and must run before a second thread allocates: glibc fixes its arena limit
then, and threads keep the arena they got. So each entry point calls it before its imports,
when it runs as a program, and it acts only for a CPU run (no TPU or GPU plugin installed, or
JAX_PLATFORMS=cpu): on an accelerator host the step's buffers
live on the device, and a single arena would serialise the input pipeline's threads.
SPATIALMIX_RETAIN_HOST_MEMORY=0 turns it off, =1 forces it on.
"""

import ctypes
import importlib.metadata
import importlib.util
import os
import platform

ENV = 'SPATIALMIX_RETAIN_HOST_MEMORY'
# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# A trim threshold of -1 turns trimming off (mallopt(3)); any positive one (at most 2^31 - 1,
# an int) still hands back a freed top of the heap larger than it, which a deep model on
# 32x32 images frees every step (ConvMixer-128/8 k8 p1 at batch 128: ~2.9 GiB).
SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
_applied = None  # what the first call did; later calls report it


def _accelerator_plugin_installed():
  if importlib.util.find_spec('libtpu') is not None:
    return True
  return bool(importlib.metadata.entry_points(group='jax_plugins'))


def wanted():
  """Whether this process should keep freed memory: the env switch, else a CPU-only run."""
  switch = os.environ.get(ENV, '').strip()
  if switch in ('0', '1'):
    return switch == '1'
  platforms = os.environ.get('JAX_PLATFORMS', '').strip().lower()
  if platforms:
    return platforms == 'cpu'
  return not _accelerator_plugin_installed()


def retain_freed_memory():
  """Applies the malloc settings where they help, once per process; returns what it did, for
  logs and benchmark headers: 'retained', 'off' (not wanted here) or 'unsupported' (not
  glibc)."""
  global _applied
  if _applied is None:
    _applied = _apply()
  return _applied


def _apply():
  if not wanted():
    return 'off'
  if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
    return 'unsupported'
  libc = ctypes.CDLL(None)
  if not all(libc.mallopt(option, value) == 1 for option, value in SETTINGS):
    return 'unsupported'
  return 'retained'
