"""FGSM / PGD (paper §4.3) and the stronger attacks (PGD-20, APGD-CE, transfer): the ε-ball,
accuracy under attack and its sanity checks, eval.json, adversarial training."""

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
from spatialmix_jax.objectives import eval_loop
from spatialmix_jax.objectives import tasks
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
  config.eval.apgd_steps = 10  # its first step is 2ε: projection works from the start
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


# Stronger attacks (PGD-20 from a random start, APGD-CE, transfer): the sanity checks any attack
# that is not masked must pass, on the trained digits model.
STRONG_EPSILONS = '0,4,16,64'


@pytest.fixture(scope='module')
def strong(trained):
  """({attack: {ε: accuracy}} of fgsm, pgd20 and apgd on every test digit, clean accuracy)."""
  config, workdir = trained
  config = config.copy_and_resolve_references()
  config.eval.attacks = 'fgsm,pgd20,apgd'
  config.eval.epsilons = STRONG_EPSILONS
  experiment = experiment_lib.create_experiment(config)
  state, _ = evaluation.restore_for_eval(config, workdir, experiment)
  eval_data = input_pipeline.create_eval_data(experiment)
  variables = evaluation.model_variables(state)
  clean = eval_loop.run(eval_loop.compile_eval_step(experiment), variables, eval_data,
                        experiment.mesh)
  return attacks.evaluate_attacks(experiment, variables, eval_data), clean


def test_every_attack_at_eps_zero_is_the_clean_accuracy(strong):
  robustness, clean = strong
  for attack in ('fgsm', 'pgd20', 'apgd'):
    assert robustness[attack]['0'] == clean['accuracy'], attack


def test_iterative_attacks_are_no_weaker_than_fgsm(strong):
  robustness, clean = strong
  one_image = 1 / clean['count']
  for attack in ('pgd20', 'apgd'):
    for eps in STRONG_EPSILONS.split(','):
      # Neither algorithm contains FGSM's point, so one image of slack; none is needed for
      # APGD's guarantee that it never ends above the clean accuracy.
      assert robustness[attack][eps] <= robustness['fgsm'][eps] + one_image, (attack, eps)
      assert robustness[attack][eps] <= clean['accuracy']
  assert robustness['apgd']['16'] < robustness['fgsm']['16']  # and stronger where it counts


def test_accuracy_falls_with_eps_and_reaches_zero_at_a_large_eps(strong):
  robustness, clean = strong
  one_image = 1 / clean['count']
  for attack in ('fgsm', 'pgd20', 'apgd'):
    curve = [robustness[attack][e] for e in STRONG_EPSILONS.split(',')]
    assert all(b <= a + one_image for a, b in zip(curve, curve[1:])), (attack, curve)
    assert curve[1] < curve[0] - 0.02 and curve[2] < curve[1] - 0.05, (attack, curve)
  # 64/255 moves a digit a quarter of its range: an unmasked model is then always fooled.
  assert robustness['pgd20']['64'] <= 0.01 and robustness['apgd']['64'] <= 0.01


class _LinearModel:
  """logits = x·W, for attacks whose best answer is known."""

  def __init__(self, weights):
    self.weights = weights

  def apply(self, variables, images, train=False):
    del variables, train
    return images.reshape(images.shape[0], -1) @ self.weights


def _linear_experiment(weights, eval_config):
  config = type('Config', (), {'eval': eval_config, 'seed': 0})
  return type('Experiment', (), {'config': config, 'model': _LinearModel(weights),
                                 'task': tasks.Classification(weights.shape[1])})


def test_pgd20_is_twenty_random_start_steps_of_2_5_eps_over_20_whatever_pgd_fields_say():
  eval_config = type('EvalConfig', (), {'pgd_variant': 'paper', 'pgd_step_size': 6.0,
                                        'pgd_steps': 2, 'apgd_steps': 100})
  assert attacks.settings('pgd20', eval_config) == {'steps': 20, 'step_size': '2.5ε/20',
                                                     'random_start': True}
  weights = jnp.array([[1.0, -1.0], [-1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
  experiment = _linear_experiment(weights, eval_config)
  images, labels, epsilon = jnp.full((2, 4), 0.5), jnp.array([0, 1]), 0.1
  key = jax.random.PRNGKey(3)
  crafted = attacks.adversarial_images(experiment, None, images, labels, 'pgd20', epsilon, key)
  loss_fn = attacks.classification_loss(experiment, None, labels)
  np.testing.assert_array_equal(crafted, attacks.pgd(
      loss_fn, images, epsilon, steps=20, step_size=2.5 * epsilon / 20, key=key))
  # The two-class margin is linear in x: 20 steps of ε/8 reach its worst corner from any start.
  direction = np.sign(np.asarray(weights[:, labels] - weights[:, 1 - labels]).T)
  np.testing.assert_allclose(crafted, 0.5 - epsilon * direction, atol=1e-6)


@pytest.fixture(scope='module')
def chans_trained(trained, tmp_path_factory):
  """A second model on the digits (chans mode, another seed): a transfer target."""
  config, _ = trained
  config = config.copy_and_resolve_references()
  config.mode = 'chans'
  config.seed = 1
  workdir = str(tmp_path_factory.mktemp('chans'))
  train.train_and_evaluate(config, workdir)
  return config, workdir


def test_transfer_attack_crafts_on_the_source_and_classifies_with_the_target(
    trained, chans_trained, strong):
  source_config, source_dir = trained
  config, workdir = chans_trained
  config = config.copy_and_resolve_references()
  config.eval.attacks = 'fgsm,apgd'
  config.eval.epsilons = '0,16'
  config.eval.apgd_steps = 20
  config.eval.transfer_from = source_dir
  record = evaluation.evaluate(config, workdir)
  robustness = record['robustness']
  assert set(robustness) == {'transfer_fgsm', 'transfer_apgd'}
  assert record['transfer_from'] == source_dir
  for per_eps in robustness.values():
    assert per_eps['0'] == record['test_accuracy']
    assert per_eps['16'] < record['test_accuracy']  # the digits' adversarial images transfer
  # Crafted on the source and classified by it, the images are the white-box attack's.
  source_config = source_config.copy_and_resolve_references()
  experiment = experiment_lib.create_experiment(source_config)
  state, _ = evaluation.restore_for_eval(source_config, source_dir, experiment)
  model = (experiment, evaluation.model_variables(state))
  eval_data = input_pipeline.create_eval_data(experiment)
  on_itself, = attacks.crafted_accuracy('pgd20', attacks.parse_epsilons('16'), model, [model],
                                        eval_data)
  white_box, _ = strong
  assert on_itself['16'] == white_box['pgd20']['16']


def test_transfer_needs_a_trained_source_and_attacks(tiny_config, tmp_path):
  tiny_config.eval.transfer_from = str(tmp_path)
  tiny_config.eval.attacks = 'fgsm'
  with pytest.raises(ValueError, match='has no config.json') as error:
    experiment_lib.create_experiment(tiny_config)
  assert '\n' not in str(error.value)
  tiny_config.eval.attacks = ''
  with pytest.raises(ValueError, match='eval.attacks is empty'):
    experiment_lib.create_experiment(tiny_config)
  tiny_config.eval.transfer_from = None
  tiny_config.eval.apgd_steps = 0
  with pytest.raises(ValueError, match='eval.apgd_steps must be an integer >= 1'):
    experiment_lib.create_experiment(tiny_config)


def test_a_source_of_other_images_is_a_one_line_error(tiny_config):
  target = experiment_lib.create_experiment(tiny_config)
  other = type('Experiment', (), {'config': type('Config', (), {'dataset': 'cifar10'}),
                                  'image_shape': (32, 32, 3),
                                  'spec': type('Spec', (), {'num_classes': 10})})
  with pytest.raises(ValueError, match='give a source trained on the same data') as error:
    evaluation.check_transferable(other, target, '/runs/cifar')
  assert '\n' not in str(error.value)
  evaluation.check_transferable(target, target, '/runs/digits')  # the same data: no error
