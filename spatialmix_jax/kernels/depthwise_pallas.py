"""Pallas depthwise convolution ('SAME', stride 1) for GPU (Triton) and TPU (Mosaic).

`depthwise_conv_pallas(x, kernel)` computes what `depthwise.depthwise_conv` does: NHWC `x`,
a (k, k, 1, C * d) kernel, 'SAME' padding as lax pads it (even k: (k-1)//2 before, k//2
after). Three kernels sit under one `jax.custom_vjp`:

* the forward pass and the input gradient are the same kernel, a stride-1 correlation of a
  zero-padded input with k*k per-channel taps: dx is the output gradient, padded the
  mirrored way, correlated with the flipped kernel;
* the kernel gradient is a reduction over batch and space: each program sums
  x_pad[n, i + p, j + q, c] * g[n, i, j, c] over its block of images and rows for all
  k*k taps in one pass (each row of g is read once, not once per tap), and XLA adds the
  per-program partial sums. It is never traced when the kernel is not differentiated
  (a frozen spatial mixer): `symbolic_zeros` tells the forward rule which inputs are.

Every program owns a block of images x output rows x channels. It reads its padded input
block through a Ref, one output row at a time: for each tap it loads the row slice shifted
by (p, q) and multiply-adds it in float32. Only static slices of Refs, elementwise ops, one
sum over an axis and `fori_loop` are used: both lowerings support them. Where the
backends differ (block sizes, dtypes in memory, compiler parameters) `TILINGS` holds the
choice. Other backends (CPU) run the same kernels with `interpret=True`: slow, for tests.

Depth multiplier d > 1 repeats every input channel d times before the kernels (output
channel o reads input channel o // d), which costs one d-times larger copy of x.
"""

import functools
from typing import NamedTuple

import jax
from jax import lax
from jax.custom_derivatives import SymbolicZero
import jax.numpy as jnp
from jax.experimental import pallas as pl


class Tiling(NamedTuple):
  """How one backend cuts the work into Pallas programs."""
  max_channel_block: int  # channels (the vector lane axis) per program
  power_of_two: bool  # Triton: every loaded or stored tile must have 2^n elements
  max_rows: int  # output rows per program; 0: all rows of the image
  block_bytes: int  # images are grouped until the padded input block reaches this; 0: one
  float32_in_memory: bool  # kernels read and write float32, casts are done outside


TILINGS = {
    # Triton reads a block through pointers into global memory, so a program costs no copy:
    # one image x 8 output rows x 64 channels per program keeps many programs in flight
    # (B128 16x16 C128 gives 512). Tiles are (width, channels) with both powers of two.
    'gpu': Tiling(max_channel_block=64, power_of_two=True, max_rows=8, block_bytes=0,
                  float32_in_memory=False),
    # Mosaic copies each program's whole input block into VMEM (double-buffered), so all
    # rows of an image are done by one program and images are grouped up to 2 MiB blocks
    # to amortise the per-step cost. Channels fill the 128 lanes; the width is padded to a
    # multiple of the 8 sublanes. Reading a tap's row slice starts at an unaligned sublane
    # offset, which Mosaic supports for 32-bit types only, hence float32 in memory (and
    # for the outputs, so that no Ref has a packed 16-bit tiling); the casts fuse into the
    # XLA pad and crop around the kernels.
    'tpu': Tiling(max_channel_block=128, power_of_two=False, max_rows=0,
                  block_bytes=2 << 20, float32_in_memory=True),
}
# Interpret mode has no hardware constraints; it runs the GPU tiling, the one with the
# most programs and padding, so that CPU tests exercise the block indexing hardest.
_INTERPRET_TILING = TILINGS['gpu']
# Double-buffered input and output blocks of one TPU program must fit the smallest default
# scoped VMEM limit (16 MiB on v5e) with room left for Mosaic's own scratch.
_TPU_VMEM_BUDGET = 12 << 20


class _Blocks(NamedTuple):
  images: int  # batch block
  rows: int  # output rows per program
  width: int  # padded output width (the tile's second-to-last axis)
  channels: int  # channel block
  padded_channels: int  # channels rounded up to a whole number of blocks


def _next_power_of_two(n):
  return 1 << (n - 1).bit_length()


def _round_up(n, multiple):
  return -(-n // multiple) * multiple


def _largest_divisor(n, limit):
  return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _same_pads(k):
  """(before, after) of lax's stride-1 'SAME' padding: the extra one goes after."""
  return (k - 1) // 2, k // 2


def _tiling(backend):
  return TILINGS.get(backend, _INTERPRET_TILING)


def _blocks(shape, k_h, k_w, tiling):
  n, h, w, c = shape
  if tiling.power_of_two:
    channels = min(tiling.max_channel_block, _next_power_of_two(c))
    width = _next_power_of_two(w)
  else:
    # A block spanning all channels may have any size; a partial one must fill the lanes.
    channels = c if c <= tiling.max_channel_block else tiling.max_channel_block
    width = _round_up(w, 8)
  rows = _largest_divisor(h, tiling.max_rows) if tiling.max_rows else h
  image_bytes = (h + k_h - 1) * (width + k_w - 1) * channels * 4
  images = (_largest_divisor(n, tiling.block_bytes // image_bytes)
            if tiling.block_bytes else 1)
  return _Blocks(images, rows, width, channels, _round_up(c, channels))


def unsupported_reason(x_shape, kernel_shape, stride, backend):
  """Why `depthwise_conv_pallas` cannot run this conv here (one line), or None."""
  if stride != 1:
    return (f"depthwise_impl 'pallas' supports stride 1 only, not {stride}; use 'auto', "
            "'xla' or 'shift' for strided convs.")
  if backend == 'tpu':
    k_h, k_w, _, out_channels = kernel_shape
    blocks = _blocks((*x_shape[:3], out_channels), k_h, k_w, TILINGS['tpu'])
    h = x_shape[1]
    block = blocks.images * blocks.channels * 4 * (
        (h + k_h - 1) * (blocks.width + k_w - 1) + h * blocks.width)
    if 2 * block > _TPU_VMEM_BUDGET:
      return (f"depthwise_impl 'pallas' keeps a whole {h}x{x_shape[2]} image per program "
              f"in TPU VMEM, which needs {2 * block / 2**20:.0f} MiB of a "
              f"{_TPU_VMEM_BUDGET >> 20} MiB budget; use 'xla' for images this large.")
  return None


def _compiler_params(backend):
  if backend == 'gpu':
    from jax.experimental.pallas import triton as pltriton  # pylint: disable=g-import-not-at-top
    return pltriton.CompilerParams(num_warps=4)
  if backend == 'tpu':
    from jax.experimental.pallas import tpu as pltpu  # pylint: disable=g-import-not-at-top
    # No grid axis carries a dependency, so both TensorCores of a chip may split any.
    return pltpu.CompilerParams(dimension_semantics=('parallel',) * 3)
  return None


def _pad_input(a, pads_h, pads_w, k_w, blocks, dtype):
  """Zero pads: 'SAME' rows and columns, then columns and channels up to whole tiles."""
  _, _, w, c = a.shape
  right = blocks.width + k_w - 1 - w - pads_w[0]
  return jnp.pad(a.astype(dtype), [(0, 0), pads_h, (pads_w[0], right),
                                   (0, blocks.padded_channels - c)])


def _memory_dtype(dtype, tiling):
  return jnp.float32 if tiling.float32_in_memory else dtype


# ---------------------------------------------------------------------------------------
# Kernels. Refs hold one program's blocks; `first_row` is the program's first output row.

def _correlate_kernel(a_ref, taps_ref, out_ref, *, k_h, k_w):
  """out[b, i, j] = sum_{p, q} a[b, first_row + i + p, j + q] * taps[p * k_w + q]."""
  images, rows, width, _ = out_ref.shape
  first_row = pl.program_id(1) * rows

  def image(b, carry):
    def row(i, carry):
      acc = None
      for p in range(k_h):
        for q in range(k_w):
          window = a_ref[b, first_row + i + p, pl.ds(q, width), :].astype(jnp.float32)
          term = window * taps_ref[pl.ds(p * k_w + q, 1), :]
          acc = term if acc is None else acc + term
      out_ref[b, i] = acc.astype(out_ref.dtype)
      return carry
    return lax.fori_loop(0, rows, row, carry)

  lax.fori_loop(0, images, image, 0)


def _kernel_grad_kernel(a_ref, g_ref, partial_ref, *, k_h, k_w):
  """partial[tap p * k_w + q] = sum_{b, i, j} a[b, first_row + i + p, j + q] * g[b, i, j].

  One pass over the output gradient: each (width, channels) row of g is loaded once and
  multiplied with the k_h * k_w windows of `a` it meets, every tap's product summed over
  the width at once into that tap's (1, channels) float32 accumulator. The accumulators
  are the loops' carry, so they stay in registers (GPU) or vregs and VMEM (TPU); per-tap
  (width, channels) accumulators, which would defer the width sum to the end, are
  k_h * k_w times larger: 81 x 32 x 64 float32 for k = 9 on a 32-wide map is about 1300
  registers per thread of a 4-warp GPU program, far past the 255 it has. The price is a
  width sum per tap and row rather than one per tap; the k*k-pass form this replaced
  (read g once per tap, one (width, channels) accumulator at a time) was never timed on a
  device either, so which is faster there is not known.
  """
  images, rows, width, channels = g_ref.shape
  first_row = pl.program_id(1) * rows

  def image(b, sums):
    def row(i, sums):
      g_row = g_ref[b, i].astype(jnp.float32)  # this row's only read of g
      return tuple(
          sums[p * k_w + q] + jnp.sum(
              a_ref[b, first_row + i + p, pl.ds(q, width), :].astype(jnp.float32) * g_row,
              axis=0, keepdims=True)
          for p in range(k_h) for q in range(k_w))
    return lax.fori_loop(0, rows, row, sums)

  zeros = tuple(jnp.zeros((1, channels), jnp.float32) for _ in range(k_h * k_w))
  # One store per tap: the taps are not stacked into one tile first because Pallas's Triton
  # lowering concatenates only two tiles along their last axis (and 81 rows would not be a
  # power of two anyway).
  for tap, total in enumerate(lax.fori_loop(0, images, image, zeros)):
    partial_ref[0, 0, pl.ds(tap, 1), :] = total


# ---------------------------------------------------------------------------------------
# Calls.

def _grid_and_input_spec(shape, k_h, k_w, blocks):
  n, h, _, _ = shape
  grid = (n // blocks.images, h // blocks.rows, blocks.padded_channels // blocks.channels)
  # The whole padded image height: a program's rows need k_h - 1 halo rows below them,
  # which blocked indexing cannot express, so each program offsets into the full block.
  spec = pl.BlockSpec((blocks.images, h + k_h - 1, blocks.width + k_w - 1, blocks.channels),
                      lambda b, r, c: (b, 0, 0, c))
  return grid, spec


def _correlate(a, taps, pads_h, pads_w, out_dtype, backend):
  """'Same'-size correlation of NHWC `a` with (k_h, k_w, C) `taps` after padding `a`."""
  n, h, w, c = a.shape
  k_h, k_w = taps.shape[:2]
  tiling = _tiling(backend)
  blocks = _blocks(a.shape, k_h, k_w, tiling)
  grid, a_spec = _grid_and_input_spec(a.shape, k_h, k_w, blocks)
  a_pad = _pad_input(a, pads_h, pads_w, k_w, blocks, _memory_dtype(a.dtype, tiling))
  taps = jnp.pad(taps.astype(jnp.float32).reshape(k_h * k_w, c),
                 [(0, 0), (0, blocks.padded_channels - c)])
  out = pl.pallas_call(
      functools.partial(_correlate_kernel, k_h=k_h, k_w=k_w),
      out_shape=jax.ShapeDtypeStruct((n, h, blocks.width, blocks.padded_channels),
                                     _memory_dtype(out_dtype, tiling)),
      grid=grid,
      in_specs=[a_spec, pl.BlockSpec((k_h * k_w, blocks.channels), lambda b, r, c: (0, c))],
      out_specs=pl.BlockSpec((blocks.images, blocks.rows, blocks.width, blocks.channels),
                             lambda b, r, c: (b, r, 0, c)),
      compiler_params=_compiler_params(backend),
      interpret=backend not in TILINGS,
      name='depthwise_correlate',
  )(a_pad, taps)
  return out[:, :, :w, :c].astype(out_dtype)


def _kernel_grad(x, g, k_h, k_w, backend):
  """dkernel[p, q, c] = sum_{n, i, j} x_pad[n, i + p, j + q, c] * g[n, i, j, c]."""
  n, h, w, c = x.shape
  tiling = _tiling(backend)
  blocks = _blocks(x.shape, k_h, k_w, tiling)
  grid, x_spec = _grid_and_input_spec(x.shape, k_h, k_w, blocks)
  dtype = _memory_dtype(x.dtype, tiling)
  x_pad = _pad_input(x, _same_pads(k_h), _same_pads(k_w), k_w, blocks, dtype)
  # Zero columns and channels beyond the image add nothing to the sums.
  g_pad = jnp.pad(g.astype(dtype), [(0, 0), (0, 0), (0, blocks.width - w),
                                    (0, blocks.padded_channels - c)])
  partials = pl.pallas_call(
      functools.partial(_kernel_grad_kernel, k_h=k_h, k_w=k_w),
      out_shape=jax.ShapeDtypeStruct(
          (grid[0], grid[1], k_h * k_w, blocks.padded_channels), jnp.float32),
      grid=grid,
      in_specs=[x_spec, pl.BlockSpec(
          (blocks.images, blocks.rows, blocks.width, blocks.channels),
          lambda b, r, c: (b, r, 0, c))],
      out_specs=pl.BlockSpec((1, 1, k_h * k_w, blocks.channels),
                             lambda b, r, c: (b, r, 0, c)),
      compiler_params=_compiler_params(backend),
      interpret=backend not in TILINGS,
      name='depthwise_kernel_grad',
  )(x_pad, g_pad)
  return partials.sum(axis=(0, 1))[:, :c].reshape(k_h, k_w, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise(x, taps, kernel_size, backend):
  k_h, k_w = kernel_size
  return _correlate(x, taps, _same_pads(k_h), _same_pads(k_w), x.dtype, backend)


def _depthwise_fwd(x, taps, kernel_size, backend):
  # With symbolic_zeros each primal comes with a `perturbed` bit: keep only what the
  # requested gradients need (x for the kernel gradient, the kernel for the input one).
  y = _depthwise(x.value, taps.value, kernel_size, backend)
  return y, (x.value if taps.perturbed else None, taps.value if x.perturbed else None)


def _depthwise_bwd(kernel_size, backend, residuals, g):
  x, taps = residuals
  if isinstance(g, SymbolicZero):
    return None, None
  k_h, k_w = kernel_size
  dx = dtaps = None
  if taps is not None:
    # dx[r] = sum_p g[r - p + lo] w[p]: a correlation of g padded (hi, lo) instead of
    # (lo, hi) with the kernel flipped in both spatial axes.
    dx = _correlate(g, taps[::-1, ::-1], _same_pads(k_h)[::-1], _same_pads(k_w)[::-1],
                    g.dtype, backend)
  if x is not None:
    dtaps = _kernel_grad(x, g, k_h, k_w, backend).astype(x.dtype)
  return dx, dtaps


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd, symbolic_zeros=True)


def depthwise_conv_pallas(x, kernel, *, stride=1, backend=None):
  """'SAME' depthwise convolution of NHWC `x` with a (k, k, 1, C*d) kernel, via Pallas."""
  backend = backend or jax.default_backend()
  reason = unsupported_reason(x.shape, kernel.shape, stride, backend)
  if reason:
    raise ValueError(reason)
  k_h, k_w, _, out_channels = kernel.shape
  d = out_channels // x.shape[-1]
  # One dtype inside the custom VJP, so each gradient has its primal's dtype; the casts'
  # own transposes convert back where x and kernel dtypes differ.
  dtype = jnp.result_type(x, kernel)
  x = x.astype(dtype)
  if d > 1:
    # Output channel o reads input channel o // d: the repeat makes it a d = 1 conv, and
    # the repeat's transpose sums the d input gradients of each channel.
    x = jnp.repeat(x, d, axis=-1)
  return _depthwise(x, kernel.astype(dtype).reshape(k_h, k_w, out_channels), (k_h, k_w),
                    backend)
