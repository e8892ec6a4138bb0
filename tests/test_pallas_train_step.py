"""The project's whole train step with depthwise_impl='pallas' (the Pallas kernels in interpret
mode, as on any CPU) against the same step with 'xla': one update of a small ConvMixer on the
embedded digits, in full and chans mode, and which Pallas kernels each mode's step contains."""

import jax
import numpy as np
import pytest
from sklearn import datasets as sklearn_datasets

from configs import default
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.infra import sharding
from spatialmix_jax.training import train_state
from spatialmix_jax.training import train_step
from test_depthwise_pallas import _pallas_call_names

# A large plain-SGD rate makes each update w' - w = -rate * gradient, with the gradient
# far above the rounding of w: comparing updates compares the step's gradients to float32
# precision (a small rate would bury their low bits in the rounding of w; Adam's first
# step, about rate * sign(gradient), would hide all but their signs).
_RATE = 1000.0


def _config(mode, impl):
  config = default.get_config()  # the digits ConvMixer
  # Kernel 5 on the 8x8 digits: the taps at the border read the 'SAME' padding.
  config.model.update(width=16, depth=2, kernel_size=5, depthwise_impl=impl)
  config.mode = mode
  config.batch_size = 16
  config.num_train_steps = 1
  config.optimizer.update(name='sgd', schedule='constant', learning_rate=_RATE, momentum=0.0,
                          weight_decay=0.0, grad_clip_norm=0.0)
  return config


def _digits_batch(size):
  digits = sklearn_datasets.load_digits()
  # The pipeline's images: 8-bit pixels (what the digits builder stores) scaled to [0, 1].
  images = np.round(digits.images[:size] * 255 / 16)[..., None] / 255
  return {'image': images.astype(np.float32), 'label': digits.target[:size].astype(np.int32)}


def _step(mode, impl):
  """(the jitted train step, its initial state, the device batch) of `impl`'s experiment."""
  experiment = experiment_lib.create_experiment(_config(mode, impl))
  tx, _ = train_state.create_optimizer(experiment, 1, 1)
  state = jax.jit(lambda: train_state.init_state(experiment, tx),
                  out_shardings=sharding.replicated(experiment.mesh))()
  batch = sharding.global_batch(_digits_batch(16), experiment.mesh)
  return train_step.compile_train_step(experiment, tx), state, batch


@pytest.mark.parametrize('mode', ['full', 'chans'])
def test_pallas_train_step_equals_xla_step(mode):
  step, state, batch = _step(mode, 'pallas')
  xla_step, xla_state, _ = _step(mode, 'xla')
  # Each step has its own initial state, since it donates it; the weights do not depend on
  # the impl.
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, state.weights, xla_state.weights)))
  before = jax.device_get(state.as_dict())

  kernels = _pallas_call_names(jax.make_jaxpr(step)(state, batch).jaxpr)
  # Each of the 2 blocks: the forward correlation, and in the backward pass the input
  # gradient (in every mode a learned BatchNorm lies before each block) and, only where the
  # spatial mixer is learned, the kernel gradient: chans must not compute it at all, rather
  # than compute it and drop it.
  assert kernels.count('depthwise_correlate') == 4, kernels
  assert kernels.count('depthwise_kernel_grad') == (2 if mode == 'full' else 0), kernels

  new_state, metrics = jax.device_get(step(state, batch))
  xla_new_state, xla_metrics = jax.device_get(xla_step(xla_state, batch))

  np.testing.assert_equal(metrics['count'], xla_metrics['count'])
  # The loss sum of 16 examples, each a float32 forward pass summing the same products in
  # a different order: relative differences of a few float32 ulps (2^-24 each).
  np.testing.assert_allclose(metrics['loss'], xla_metrics['loss'], rtol=1e-6)
  # Weights as updates, rate * gradient (zero for frozen collections, in both), and the
  # BatchNorm statistics of the forward pass.
  got = {'updates': _minus(new_state.weights, before['weights']),
         'batch_stats': new_state.batch_stats}
  want = {'updates': _minus(xla_new_state.weights, before['weights']),
          'batch_stats': xla_new_state.batch_stats}
  for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)):
    # Both sides sum the same float32 products in different orders, and BatchNorm's backward
    # pass (centring: differences of nearly equal sums) amplifies that rounding where
    # entries cancel. The 'shift' and 'fft' impls differ from 'xla' in this step by up to
    # 3.6e-6 of a leaf's largest entry, as 'pallas' does. A kernel gradient with its taps
    # transposed fails here (tried by editing the kernel).
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-5 * float(np.abs(w).max()),
                               err_msg=f'{mode} {jax.tree_util.keystr(path)}')


def _minus(a, b):
  return jax.tree.map(lambda x, y: np.asarray(x) - np.asarray(y), a, b)
