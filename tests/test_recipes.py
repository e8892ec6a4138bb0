"""Training recipes: mixed precision, gradient accumulation, PyTorch init, the recipe configs."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import convmixer_cifar10
from configs import convmixer_cifar10_256_8
from configs import convmixer_imagenet
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.modeling import models
from spatialmix_jax.training import optimizers
from spatialmix_jax.study import sweep
from spatialmix_jax.training import train_state
from spatialmix_jax.training import train_step


def _batch(config, n, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.uniform(size=(n, 8, 8, 1)), jnp.float32),
          'label': jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def _one_step(experiment, batch):
  tx, _ = train_state.create_optimizer(experiment, total_steps=10, steps_per_epoch=10)
  state = train_state.init_state(experiment, tx)
  step = jax.jit(lambda s, b: train_step.train_step(s, b, experiment=experiment, tx=tx))
  return step(state, batch)


def test_bfloat16_step_matches_float32_and_keeps_float32_state(tiny_config):
  tiny_config.mode = 'full'
  tiny_config.model.depth = 1
  batch = _batch(tiny_config, 32)
  results = {}
  for dtype in ('float32', 'bfloat16'):
    tiny_config.dtype = dtype
    experiment = experiment_lib.create_experiment(tiny_config)
    results[dtype] = _one_step(experiment, batch)
  (state32, metrics32), (state16, metrics16) = results['float32'], results['bfloat16']
  # bfloat16 keeps 8 mantissa bits (~0.4 % per rounding); a cross-entropy near log(10) ≈ 2.3
  # through two blocks stays well inside 2 %.
  loss32 = float(metrics32['loss']) / 32
  loss16 = float(metrics16['loss']) / 32
  assert loss16 == pytest.approx(loss32, rel=0.02)
  for tree in (state16.weights, state16.batch_stats, state16.opt_state):
    assert {x.dtype for x in jax.tree.leaves(tree) if hasattr(x, 'dtype') and x.ndim} == {
        jnp.dtype(jnp.float32)}
  assert metrics16['loss'].dtype == jnp.float32
  # Adam's first update is lr * sign(gradient): the two precisions agree on almost every sign
  # (cosine 1 - 2 * disagreeing fraction), the rest being gradients near zero.
  flat = lambda w: np.concatenate([np.ravel(x) for x in jax.tree.leaves(w)])
  init = flat(experiment.init_variables()['channel'])
  d32, d16 = flat(state32.weights['channel']) - init, flat(state16.weights['channel']) - init
  assert np.dot(d32, d16) / (np.linalg.norm(d32) * np.linalg.norm(d16)) > 0.8


def test_bfloat16_convolutions_compute_in_bfloat16(tiny_config):
  tiny_config.dtype = 'bfloat16'
  tiny_config.model.depthwise_impl = 'xla'
  experiment = experiment_lib.create_experiment(tiny_config)
  variables = experiment.init_variables()
  jaxpr = jax.make_jaxpr(lambda v, x: experiment.model.apply(v, x, train=False))(
      variables, jnp.zeros((2, 8, 8, 1)))
  eqns = [e for e in jaxpr.jaxpr.eqns if e.primitive.name in ('conv_general_dilated',
                                                              'dot_general')]
  assert len(eqns) >= 1 + 2 * tiny_config.model.depth  # stem, depthwise + pointwise per block
  for e in eqns:
    assert {v.aval.dtype for v in e.invars} == {jnp.dtype(jnp.bfloat16)}, e


class _NoNormNet(nn.Module):
  """Conv-GELU-pool-dense: no BatchNorm, so micro-batches cannot interact."""

  @nn.compact
  def __call__(self, x, train):
    del train
    x = nn.gelu(nn.Conv(8, (3, 3))(x))
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


def _no_norm_experiment(tiny_config, accum):
  config = tiny_config.copy_and_resolve_references()
  config.grad_accum_steps = accum
  experiment = experiment_lib.create_experiment(config)
  return dataclasses.replace(experiment, model=_NoNormNet(), collections=('params',), frozen=())


def test_accumulated_micro_batches_equal_one_large_batch(tiny_config):
  batch = _batch(tiny_config, 32, seed=1)
  whole, whole_metrics = _one_step(_no_norm_experiment(tiny_config, 1), batch)
  accumulated, accumulated_metrics = _one_step(_no_norm_experiment(tiny_config, 4), batch)
  for a, b in zip(jax.tree.leaves(whole.weights), jax.tree.leaves(accumulated.weights)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  for a, b in zip(jax.tree.leaves(whole.opt_state), jax.tree.leaves(accumulated.opt_state)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)
  for key in whole_metrics:
    assert float(accumulated_metrics[key]) == pytest.approx(float(whole_metrics[key]), rel=1e-5)
  assert int(accumulated.step) == 1  # one optimizer update, not four


def test_accumulation_with_batchnorm_normalises_each_micro_batch(tiny_config):
  tiny_config.model.depth = 1
  batch = _batch(tiny_config, 32, seed=2)
  whole, _ = _one_step(experiment_lib.create_experiment(tiny_config), batch)
  tiny_config.grad_accum_steps = 4
  accumulated, metrics = _one_step(experiment_lib.create_experiment(tiny_config), batch)
  assert float(metrics['count']) == 32 and np.isfinite(float(metrics['loss']))
  # Per-micro-batch statistics and four running-average updates: documented, not equal.
  stats = zip(jax.tree.leaves(whole.batch_stats), jax.tree.leaves(accumulated.batch_stats))
  assert any(not np.allclose(a, b) for a, b in stats)


@pytest.mark.parametrize('collection,fan_in', [('spatial', 8 * 8), ('channel', 256)])
def test_torch_init_std_matches_its_closed_form(collection, fan_in):
  config = convmixer_cifar10_256_8.get_config().model
  config.kernel_size = 8
  config.depth = 2
  model = models.create_model(config, num_classes=10, num_channels=3, mean=(0.5,), std=(0.5,))
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)),
                                         train=False))()
  kernels = [np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(
      variables[collection]) if 'kernel' in jax.tree_util.keystr(path)]
  assert len(kernels) == 2
  bound = 1 / math.sqrt(fan_in)  # PyTorch: kaiming_uniform_(a=sqrt(5)) = U(±1/sqrt(fan_in))
  for kernel in kernels:
    assert kernel.shape[:-1] in ((8, 8, 1), (1, 1, 256))
    assert np.abs(kernel).max() <= bound
    # 256·fan_in samples of U(±b): std b/sqrt(3) within 2 %.
    assert kernel.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_piecewise_onecycle_matches_the_convmixer_scripts():
  steps_per_epoch, epochs, peak = 7, 25, 0.05
  schedule = optimizers.create_schedule(convmixer_cifar10.get_config().optimizer,
                                        epochs * steps_per_epoch, steps_per_epoch)
  # convmixer-cifar10/train.py and timm's OneCycleLRScheduler (locuslab/convmixer).
  reference = lambda t: np.interp([t], [0, epochs * 2 // 5, epochs * 4 // 5, epochs],
                                  [0, peak, peak / 20.0, 0])[0]
  for epoch in range(epochs):
    for i in range(steps_per_epoch):
      step = epoch * steps_per_epoch + i
      assert float(schedule(step)) == pytest.approx(
          reference(epoch + (i + 1) / steps_per_epoch), rel=1e-5, abs=1e-9)


def test_recipe_configs_validate_and_carry_the_recipe():
  for preset in convmixer_imagenet.PRESETS:
    experiment_lib.validate_config(convmixer_imagenet.get_config(preset))
  imagenet = convmixer_imagenet.get_config()
  assert (imagenet.model.width, imagenet.model.kernel_size, imagenet.model.patch_size) == (
      512, 8, 7)
  assert imagenet.optimizer.schedule == 'piecewise_onecycle'
  assert (imagenet.augment.randaugment_magnitude, imagenet.augment.random_erasing,
          imagenet.augment.eval_crop_ratio, imagenet.optimizer.weight_decay) == (
              9.0, 0.25, 0.96, 2e-5)
  assert convmixer_imagenet.get_config('768_32').num_epochs == 300
  for module in (convmixer_cifar10, convmixer_cifar10_256_8):
    config = module.get_config()
    experiment_lib.validate_config(config)
    assert config.augment.randaugment_policy == 'torchvision'
    assert config.optimizer.decay_biases_and_norms
  small = convmixer_cifar10.get_config().model
  assert (small.width, small.kernel_size, small.patch_size) == (128, 8, 1)
  big = convmixer_cifar10_256_8.get_config().model
  assert (big.width, big.depth, big.kernel_size, big.patch_size) == (256, 8, 5, 2)


@pytest.mark.parametrize('field,value,match', [
    ('grad_accum_steps', 3, 'does not divide the per-device batch 32'),
    ('grad_accum_steps', 0, 'grad_accum_steps must be an integer >= 1'),
    ('dtype', 'float16', 'float32.*bfloat16'),
    ('model.init_scheme', 'kaiming', 'torch.*flax'),
])
def test_bad_recipe_setting_is_a_one_line_error(tiny_config, field, value, match):
  sweep.set_field(tiny_config, field, value)
  with pytest.raises(ValueError, match=match) as error:
    experiment_lib.create_experiment(tiny_config)
  assert '\n' not in str(error.value)
