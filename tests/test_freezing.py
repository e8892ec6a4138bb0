"""Collection freezing: mode resolution, optimizer masking, and training that leaves frozen
collections untouched."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import base
from spatialmix_jax.modeling import filters
from spatialmix_jax.modeling import freezing
from spatialmix_jax.modeling import models

CONVMIXER = ('spatial', 'stem', 'channel', 'params')


def test_modes_freeze_the_right_collections():
  assert freezing.frozen_collections('full', CONVMIXER) == ()
  assert freezing.frozen_collections('chans', CONVMIXER) == ('spatial', 'stem')
  assert freezing.frozen_collections('space', CONVMIXER) == ('stem', 'channel')
  # A separable ResNet has no stem collection: only what the model has is frozen.
  assert freezing.frozen_collections('chans', ('params', 'spatial', 'channel')) == ('spatial',)
  assert freezing.frozen_collections('full', CONVMIXER, 'params, stem') == ('stem', 'params')
  assert freezing.frozen_collections('chans', CONVMIXER, ('channel',)) == ('channel',)


def test_bad_mode_or_collection_names_the_choices():
  with pytest.raises(ValueError, match="full.*chans.*space"):
    freezing.frozen_collections('spatial', CONVMIXER)
  with pytest.raises(ValueError, match="'spatial', 'stem', 'channel', 'params'"):
    freezing.frozen_collections('full', CONVMIXER, 'spatial,batch_stats')


def _model(name):
  mc = base.get_config().model
  if name == 'convmixer':
    mc.update(width=8, depth=2, kernel_size=3, patch_size=2)
  else:
    mc.update(name=name, depth=8, kernel_size=3, depth_multiplier=1)
  return models.create_model(mc, num_classes=4, num_channels=3, mean=(0.5,), std=(0.25,))


def _init(model, x):
  # unsafe_rbg compiles several times faster than threefry on CPU; the values are irrelevant.
  key = jax.random.key(1, impl='unsafe_rbg')
  return jax.jit(functools.partial(model.init, train=False))(key, x)


def _setup(name):
  model = _model(name)
  x = jax.random.uniform(jax.random.key(0), (8, 8, 8, 3))
  labels = jnp.arange(8) % 4
  variables = _init(model, x)
  weights, batch_stats = freezing.split_variables(variables)

  @jax.jit
  def grad_fn(weights, batch_stats, x):
    def loss_fn(weights):
      logits, state = model.apply({**weights, 'batch_stats': batch_stats}, x, train=True,
                                  mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, state['batch_stats']
    return jax.grad(loss_fn, has_aux=True)(weights)

  return weights, batch_stats, x, grad_fn


def _trainable_chain():
  return optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(1e-2, weight_decay=0.1))


@pytest.fixture(scope='module', params=['convmixer', 'sep_resnet_cifar'])
def setup(request):
  return request.param, _setup(request.param)


@pytest.mark.parametrize('mode', freezing.MODES)
def test_training_leaves_frozen_collections_untouched(setup, mode):
  name, (init_weights, batch_stats, x, grad_fn) = setup
  frozen = freezing.frozen_collections(mode, init_weights)
  assert frozen or mode == 'full'
  tx = freezing.freeze(_trainable_chain(), init_weights, frozen)

  @jax.jit
  def update(grads, opt_state, weights):
    updates, opt_state = tx.update(grads, opt_state, weights)
    return optax.apply_updates(weights, updates), opt_state

  weights, opt_state = init_weights, tx.init(init_weights)
  for _ in range(3):
    grads, batch_stats = grad_fn(weights, batch_stats, x)
    for collection in frozen:  # so it is the optimizer, not a dead gradient, that freezes it
      assert any(np.any(g != 0) for g in jax.tree.leaves(grads[collection])), collection
    weights, opt_state = update(grads, opt_state, weights)
  for collection, tree in weights.items():
    pairs = zip(jax.tree.leaves(tree), jax.tree.leaves(init_weights[collection]))
    if collection in frozen:
      assert all(np.array_equal(a, b) for a, b in pairs), collection
    else:
      assert all(not np.array_equal(a, b) for a, b in pairs), collection
  assert set(weights) - set(frozen), 'every mode trains something'


def _nbytes_under(tree, collections):
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = {getattr(entry, 'key', None) for entry in path}
    if keys & set(collections):
      total += leaf.nbytes
  return total


@pytest.mark.parametrize('mode', ['chans', 'space'])
def test_frozen_collections_have_no_optimizer_state(setup, mode):
  _, (weights, *_) = setup
  frozen = freezing.frozen_collections(mode, weights)
  opt_state = freezing.freeze(_trainable_chain(), weights, frozen).init(weights)
  trainable = [c for c in weights if c not in frozen]
  assert _nbytes_under(opt_state, frozen) == 0
  # adamw keeps two float32 moments per trainable weight.
  report = freezing.parameter_report(weights, frozen)
  assert _nbytes_under(opt_state, trainable) == 2 * 4 * report['trainable']


def test_frozen_gradients_do_not_enter_clipping_or_weight_decay():
  weights = {'spatial': {'w': jnp.ones(3)}, 'channel': {'w': jnp.ones(2)}}
  grads = {'spatial': {'w': jnp.full(3, 1e6)}, 'channel': {'w': jnp.array([0.3, 0.4])}}
  tx = freezing.freeze(optax.chain(optax.clip_by_global_norm(1.0),
                                   optax.add_decayed_weights(0.5), optax.sgd(1.0)),
                       weights, ('spatial',))
  updates, _ = tx.update(grads, tx.init(weights), weights)
  np.testing.assert_allclose(updates['channel']['w'], -(np.array([0.3, 0.4]) + 0.5))
  np.testing.assert_array_equal(updates['spatial']['w'], 0.0)
  # A bare collection name is one name, not its letters.
  assert freezing.labels(weights, 'channel') == {'spatial': {'w': 'train'},
                                                 'channel': {'w': 'frozen'}}


def test_parameter_report_and_overview(setup):
  name, (weights, *_) = setup
  frozen = freezing.frozen_collections('chans', weights)
  report = freezing.parameter_report(weights, frozen)
  sizes = {c: sum(x.size for x in jax.tree.leaves(t)) for c, t in weights.items()}
  assert report['per_collection'] == sizes
  assert report['frozen'] == sum(sizes[c] for c in frozen) > 0
  assert report['trainable'] + report['frozen'] == sum(sizes.values())
  overview = freezing.parameter_overview(weights)
  assert all(c in overview for c in weights) and str(sum(sizes.values())) in overview.replace(
      ',', '')


def test_chans_mode_input_gradient_flows_through_frozen_spatial_layers():
  model = _model('convmixer')
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
  variables = _init(model, x)
  weights, batch_stats = freezing.split_variables(variables)
  assert set(freezing.frozen_collections('chans', weights)) == {'stem', 'spatial'}

  # Differentiate w.r.t. the image only: frozen layers are constants, as in an attack.
  def logit(x):
    return model.apply({**weights, 'batch_stats': batch_stats}, x, train=False)[:, 0].sum()

  grad = jax.jit(jax.grad(logit))(x)
  assert np.all(np.isfinite(grad)) and np.all(np.abs(grad).sum(axis=(1, 2, 3)) > 0)


@pytest.mark.parametrize('spatial_init', filters.FAMILIES)
def test_a_chans_run_keeps_every_filter_family_bitwise_and_says_so(tiny_config, tmp_path,
                                                                  spatial_init):
  """The flag compares with what the run really started from: smoothed filters (an einsum
  whose rounding depends on where it is compiled) read unchanged too."""
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.jobs import train  # pylint: disable=g-import-not-at-top
  config = tiny_config
  config.mode = 'chans'
  config.model.spatial_init = spatial_init
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results['frozen_unchanged'] is True
  assert (tmp_path / evaluation.FROZEN_START).exists()
  # Without the recorded fingerprint (runs from before it existed) the start is recomputed
  # the way training computes it, and still matches bit for bit.
  os.remove(tmp_path / evaluation.FROZEN_START)
  assert evaluation.evaluate(config, str(tmp_path))['frozen_unchanged'] is True


def test_the_frozen_check_sees_one_changed_bit(tiny_config, tmp_path):
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.jobs import train  # pylint: disable=g-import-not-at-top
  config = tiny_config
  config.mode = 'chans'
  config.model.spatial_init = 'smooth'
  train.train_and_evaluate(config, str(tmp_path))
  path = tmp_path / evaluation.FROZEN_START
  recorded = json.loads(path.read_text())
  digest = recorded['frozen']['spatial']
  recorded['frozen']['spatial'] = ('0' if digest[0] != '0' else '1') + digest[1:]
  path.write_text(json.dumps(recorded))
  assert evaluation.evaluate(config, str(tmp_path))['frozen_unchanged'] is False
  weights = {'spatial': {'k': np.zeros((3, 3), np.float32)}}
  changed = {'spatial': {'k': np.zeros((3, 3), np.float32)}}
  changed['spatial']['k'][1, 1] = np.float32(1e-45)  # the smallest subnormal: one bit
  assert (freezing.fingerprint(weights, ('spatial',))
          != freezing.fingerprint(changed, ('spatial',)))
  assert freezing.fingerprint(weights, ()) == {}
