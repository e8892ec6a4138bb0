"""The depthwise convolution on the native CPU kernel (csrc/depthwise_cpu.cc, built by
`native.py`): forward, input gradient and kernel gradient under one custom VJP. The caller
(`depthwise.py`) owns the geometry: output size and 'SAME' padding.
"""

import functools

import jax
import jax.numpy as jnp

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
