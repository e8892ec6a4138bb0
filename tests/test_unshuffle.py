"""Pixel un-shuffling (paper §4.4): the permutation, PSNR, the trainer's outputs, seed checks."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from spatialmix_jax.jobs import evaluation
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.jobs import train
from spatialmix_jax.objectives import unshuffle


def test_permutation_is_a_bijection_and_unscramble_inverts_exactly():
  perm = unshuffle.pixel_permutation(3, 5, 7)
  np.testing.assert_array_equal(np.sort(perm), np.arange(35))
  assert np.mean(perm != np.arange(35)) > 0.8
  np.testing.assert_array_equal(perm, unshuffle.pixel_permutation(3, 5, 7))
  images = np.random.default_rng(0).random((2, 5, 7, 3)).astype(np.float32)
  scrambled = np.asarray(unshuffle.scramble(images, perm))
  assert not np.array_equal(scrambled, images)
  # Pixels move whole: output pixel i is input pixel perm[i], all channels together.
  np.testing.assert_array_equal(scrambled.reshape(2, 35, 3), images.reshape(2, 35, 3)[:, perm])
  np.testing.assert_array_equal(np.asarray(unshuffle.unscramble(scrambled, perm)), images)


def test_psnr_matches_a_hand_computation():
  # MSE 0.01 at data range 1: 10 log10(1 / 0.01) = 20 dB; MSE 0.25 -> 6.0206 dB.
  assert float(unshuffle.psnr(jnp.float32(0.01))) == pytest.approx(20.0, abs=1e-5)
  assert float(unshuffle.psnr(jnp.float32(0.25))) == pytest.approx(6.0206, abs=1e-4)
  assert float(unshuffle.psnr(jnp.float32(1.0), data_range=255.0)) == pytest.approx(48.1308,
                                                                                   abs=1e-4)


def test_scrambled_psnr_is_the_inputs_own_psnr():
  # A 1x2 image [0, 1] swapped becomes [1, 0]: MSE 1 -> 0 dB; a flat image is unmoved (100 dB).
  images = np.array([[[[0.0], [1.0]]], [[[0.5], [0.5]]]], np.float32)
  values = np.asarray(unshuffle.scrambled_psnr(images, np.array([1, 0])))
  np.testing.assert_allclose(values, [0.0, 100.0], atol=1e-4)


@pytest.fixture
def unshuffle_config():
  from configs import unshuffle_digits  # pylint: disable=g-import-not-at-top
  config = unshuffle_digits.get_config()
  config.model.width = 16
  config.model.depth = 4
  config.batch_size = 64
  config.num_train_steps = 30
  config.optimizer.learning_rate = 0.01
  config.log_every_steps = 15
  config.checkpoint_every_steps = 30
  return config


def test_training_writes_figure_and_scrambled_baseline_and_checks_the_seed(unshuffle_config,
                                                                           tmp_path):
  results = train.train_and_evaluate(unshuffle_config, str(tmp_path))
  assert results['task'] == 'unshuffle'
  assert 0.0 < results['scrambled_psnr'] < 10.0  # a scrambled digit is mostly wrong
  assert results['test_psnr'] > results['scrambled_psnr'] + 1.0  # learnt something already
  assert json.loads((tmp_path / 'results.json').read_text())['scrambled_psnr'] == (
      results['scrambled_psnr'])
  assert (tmp_path / 'unshuffle.png').read_bytes()[:4] == b'\x89PNG'

  saved = evaluation.load_saved_config(str(tmp_path))
  assert saved.to_dict() == unshuffle_config.to_dict()

  unshuffle_config.unshuffle.permutation_seed = 7
  with pytest.raises(ValueError, match='permutation_seed=0') as error:
    evaluation.evaluate(unshuffle_config, str(tmp_path))
  assert '\n' not in str(error.value)
  assert not (tmp_path / 'eval.json').exists()
  unshuffle_config.unshuffle.permutation_seed = 0
  evaluated = evaluation.evaluate(unshuffle_config, str(tmp_path))
  assert evaluated['test_psnr'] == pytest.approx(results['test_psnr'], rel=1e-6)
  assert evaluated['scrambled_psnr'] == pytest.approx(results['scrambled_psnr'], rel=1e-6)


@pytest.mark.parametrize('name', ['unshuffle_digits', 'unshuffle_mnist',
                                  'unshuffle_fashion_mnist', 'unshuffle_cifar10'])
def test_unshuffle_configs_are_valid(name):
  module = __import__(f'configs.{name}', fromlist=['get_config'])
  config = module.get_config()
  experiment_lib.validate_config(config)
  assert config.task == 'unshuffle' and config.model.name == 'unshuffle_convmixer'
  image = {'unshuffle_digits': 8, 'unshuffle_cifar10': 32}.get(name, 28)
  # Every output pixel must see every input pixel: receptive field >= 2 * image - 1.
  assert config.model.depth * (config.model.kernel_size - 1) + 1 >= 2 * image - 1


def test_large_cifar_preset_and_unknown_preset():
  from configs import unshuffle_cifar10  # pylint: disable=g-import-not-at-top
  large = unshuffle_cifar10.get_config('large')
  assert (large.model.depth, large.model.width, large.model.kernel_size) == (16, 512, 7)
  with pytest.raises(ValueError, match="choose one of \\('', 'large'\\)"):
    unshuffle_cifar10.get_config('huge')
