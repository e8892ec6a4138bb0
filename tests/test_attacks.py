"""FGSM / PGD (paper §4.3): the ε-ball, accuracy under attack, eval.json, adversarial training."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spatialmix_jax.objectives import attacks
from spatialmix_jax.jobs import evaluation
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.infra import sharding
from spatialmix_jax.jobs import train
from spatialmix_jax.training import train_state
from spatialmix_jax.training import train_step


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A digits ConvMixer trained for 100 steps (full mode): (config, workdir)."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.mode = 'full'
  config.model.width = 16
  config.model.depth = 2
  config.batch_size = 64
  config.eval_batch_size = 120
  config.num_train_steps = 100
  config.log_every_steps = 50
  config.checkpoint_every_steps = 100
  workdir = str(tmp_path_factory.mktemp('attacked'))
  results = train.train_and_evaluate(config, workdir)
  assert results['test_accuracy'] > 0.6  # a model worth attacking
  return config, workdir


def _first_batch(config, workdir):
  experiment = experiment_lib.create_experiment(config)
  state, _ = evaluation.restore_for_eval(config, workdir, experiment)
  eval_data = input_pipeline.create_eval_data(experiment)
  batch = next(iter(eval_data.iterate()))
  return experiment, evaluation.model_variables(state), batch


@pytest.mark.parametrize('attack', attacks.ATTACKS)
def test_attacks_stay_in_the_eps_ball_and_the_pixel_range(trained, attack):
  config, workdir = trained
  config = config.copy_and_resolve_references()
  config.eval.pgd_steps = 3
  config.eval.pgd_step_size = 6.0  # steps far larger than ε: projection must do the work
  experiment, variables, batch = _first_batch(config, workdir)
  images = jnp.asarray(batch['image'])
  epsilon = 4 / 255
  adversarial = jax.jit(functools.partial(
      attacks.adversarial_images, experiment, attack=attack, epsilon=epsilon))(
          variables, images, jnp.asarray(batch['label']), key=jax.random.PRNGKey(1))
  adversarial, images = np.asarray(adversarial), np.asarray(images)
  assert np.max(np.abs(adversarial - images)) <= epsilon + 1e-6
  assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
  # Digits are mostly exactly 0 or 1: the attack must have pushed pixels inwards there too.
  assert np.mean(np.abs(adversarial - images) > epsilon / 2) > 0.3


def test_fgsm_is_one_signed_gradient_step():
  loss_fn = lambda x: jnp.sum(x * jnp.array([1.0, -2.0, 0.0, 3.0]))
  x = jnp.array([0.5, 0.5, 0.5, 0.99])
  np.testing.assert_allclose(attacks.fgsm(loss_fn, x, 0.1), [0.6, 0.4, 0.5, 1.0], atol=1e-7)


def test_zero_eps_equals_clean_and_fgsm_lowers_accuracy(trained, tmp_path):
  config, workdir = trained
  config = config.copy_and_resolve_references()
  config.eval.attacks = 'fgsm,pgd'
  config.eval.epsilons = '0,16'
  record = evaluation.evaluate(config, workdir)
  robustness = record['robustness']
  assert set(robustness) == {'fgsm', 'pgd'}
  assert robustness['pgd']['0'] == record['test_accuracy']
  assert robustness['fgsm']['0'] == record['test_accuracy']
  assert robustness['fgsm']['16'] < record['test_accuracy'] - 0.05
  assert robustness['pgd']['16'] <= robustness['fgsm']['16'] + 0.02
  with open(f'{workdir}/eval.json') as f:
    assert json.load(f)['robustness'] == robustness
  with open(f'{workdir}/robustness.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('field,value,match', [
    ('eval.epsilons', '0,300', 'outside'),
    ('eval.epsilons', '-1', 'outside'),
    ('eval.epsilons', '1,two', 'comma-separated numbers'),
    ('eval.attacks', 'fgsm,cw', 'Unknown attack'),
    ('adversarial_training.epsilon', 256.0, 'outside'),
])
def test_bad_attack_settings_are_one_line_errors(tiny_config, field, value, match):
  section, leaf = field.split('.')
  tiny_config[section][leaf] = value
  if section == 'eval' and leaf != 'attacks':
    tiny_config.eval.attacks = 'fgsm'
  if section == 'adversarial_training':
    tiny_config.adversarial_training.enabled = True
  with pytest.raises(ValueError, match=match) as error:
    experiment_lib.create_experiment(tiny_config)
  assert '\n' not in str(error.value)


def _one_step(config):
  experiment = experiment_lib.create_experiment(config)
  tx, _ = train_state.create_optimizer(experiment, total_steps=2, steps_per_epoch=2)
  state = train_state.init_state(experiment, tx)
  data = input_pipeline.create_train_data(experiment)
  batch = sharding.global_batch(next(data.iterate(0)), experiment.mesh)
  state, metrics = train_step.compile_train_step(experiment, tx)(state, batch)
  return jax.device_get(state.weights), float(metrics['loss'])


def test_fgsm_adversarial_training_changes_the_update(tiny_config):
  tiny_config.mode = 'full'
  clean, clean_loss = _one_step(tiny_config)
  tiny_config.adversarial_training.enabled = True
  tiny_config.adversarial_training.epsilon = 8.0
  attacked, attacked_loss = _one_step(tiny_config)
  assert attacked_loss > clean_loss  # the step trained on images chosen to raise the loss
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(clean),
                                                  jax.tree.leaves(attacked)))
