"""Augmentation: mixup/cutmix labels, RandAugment, random erasing, bitwise resume, bad input."""


import numpy as np
import pytest
import tensorflow as tf

from configs import base
from spatialmix_jax.data import augment
from spatialmix_jax.data import batch_mixing
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.data import image_preprocessing
from spatialmix_jax.objectives import tasks

import resume_check


def _augment_config(**overrides):
  config = base.get_config().augment
  config.update(overrides)
  return config


def _distinct_batch(n=8, size=16, channels=3):
  # Image i is the constant i / n, so every output pixel tells which example it came from.
  images = tf.broadcast_to(tf.reshape(tf.range(n, dtype=tf.float32) / n, [n, 1, 1, 1]),
                           [n, size, size, channels])
  return images, tf.range(n, dtype=tf.int32)


@pytest.mark.parametrize('mixup_alpha,cutmix_alpha', [(0.5, 0.0), (0.0, 1.0), (0.5, 0.5)])
def test_mixed_labels_are_distributions_weighted_like_the_pixels(mixup_alpha, cutmix_alpha):
  n, size = 8, 16
  images, labels = _distinct_batch(n, size)
  config = _augment_config(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
  kinds = set()
  for step in range(12):
    mixed, soft = batch_mixing.mix_batch(images, labels, batch_mixing.batch_seed(0, step), config, n)
    mixed, soft = mixed.numpy(), soft.numpy()
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
    for i in range(n):
      j = n - 1 - i  # timm's batch mode pairs example i with example N-1-i
      own, other = soft[i, i], soft[i, j]
      if i == j:
        continue
      assert own + other == pytest.approx(1.0, abs=1e-6)
      from_other = np.isclose(mixed[i], j / n, rtol=0, atol=1e-7)
      from_own = np.isclose(mixed[i], i / n, rtol=0, atol=1e-7)
      if (from_other | from_own).all():
        # Cutmix (or no mix): the other label's weight is exactly the pasted area.
        kinds.add('cut' if from_other.any() else 'none')
        assert other == pytest.approx(from_other.mean(), abs=1e-6)
      else:
        # Mixup: every pixel is own * i/n + other * j/n.
        kinds.add('mix')
        np.testing.assert_allclose(mixed[i], own * i / n + other * j / n, atol=1e-5)
  expected = {'mix'} if not cutmix_alpha else {'cut'} if not mixup_alpha else {'mix', 'cut'}
  assert expected <= kinds


def _randaugment_fn(config):
  image = tf.cast(tf.random.stateless_uniform([32, 32, 3], [7, 7], 0, 256, tf.int32), tf.uint8)
  fn = tf.function(lambda seed, index: image_preprocessing.train_image(
      image, tf.stack([seed, index]), config, fill=(0.49, 0.48, 0.45)))
  plain = image_preprocessing.train_image(image, tf.constant([0, 0], tf.int64), _augment_config())
  return lambda index, seed=0: fn(tf.constant(seed, tf.int64), tf.constant(index, tf.int64)), plain


@pytest.mark.parametrize('policy,magnitude', [('timm', 9.0), ('torchvision', 12.0)])
def test_randaugment_keeps_range_varies_and_repeats(policy, magnitude):
  config = _augment_config(randaugment_num_ops=2, randaugment_magnitude=magnitude,
                           randaugment_policy=policy,
                           randaugment_magnitude_std=0.5 if policy == 'timm' else 0.0)
  fn, plain = _randaugment_fn(config)
  outputs = [fn(i).numpy() for i in range(16)]
  for out in outputs:
    assert out.dtype == np.float32 and out.shape == (32, 32, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0
  np.testing.assert_array_equal(outputs[3], fn(3).numpy())
  np.testing.assert_array_equal(outputs[11], fn(11).numpy())
  changed = [not np.array_equal(o, plain.numpy()) for o in outputs]
  assert sum(changed) >= 8  # timm skips each op with p 0.5, so some images may stay plain
  assert len({o.tobytes() for o in outputs}) >= 12
  assert not np.array_equal(outputs[3], fn(3, seed=1).numpy())


@pytest.mark.parametrize('mode', augment.ERASING_MODES)
def test_random_erasing_hits_the_configured_fraction(mode):
  n, prob = 2000, 0.25
  images = tf.fill([n, 32, 32, 3], 0.5)
  config = _augment_config(random_erasing=prob, random_erasing_mode=mode)
  mean, std = (0.4, 0.45, 0.5), (0.2, 0.25, 0.3)
  erased = batch_mixing.random_erase(images, batch_mixing.batch_seed(3, 0), config, mean, std).numpy()
  changed = np.any(erased != 0.5, axis=(1, 2, 3))
  # Binomial std at n = 2000 is ~0.01; every box fits a 32x32 image.
  assert changed.mean() == pytest.approx(prob, abs=0.04)
  area = np.mean(np.any(erased[changed] != 0.5, axis=-1), axis=(1, 2))
  assert area.min() >= 0.01 and area.max() <= 0.36  # 2%–1/3 of the image, rounded sides
  box = np.any(erased != 0.5, axis=-1)
  if mode == 'const':  # 0 after normalisation is the mean before it
    np.testing.assert_allclose(erased[box], np.broadcast_to(mean, erased[box].shape), atol=1e-6)
  else:  # N(0, 1) after normalisation: mean + std * z before it
    z = (erased[box] - np.asarray(mean)) / np.asarray(std)
    assert abs(z.mean()) < 0.1 and z.std() == pytest.approx(1.0, abs=0.1)


def _augmented_config(tiny_config):
  config = tiny_config
  config.augment.crop_padding = 1
  config.augment.flip = True
  config.augment.randaugment_num_ops = 2
  config.augment.randaugment_magnitude = 9.0
  config.augment.randaugment_magnitude_std = 0.5
  config.augment.mixup_alpha = 0.5
  config.augment.cutmix_alpha = 0.5
  config.augment.random_erasing = 0.25
  config.augment.label_smoothing = 0.1
  return config


def test_interrupted_augmented_run_resumes_bitwise(tiny_config, tmp_path, monkeypatch):
  config = _augmented_config(tiny_config)
  config.num_train_steps = 4
  resume_check.assert_sigterm_resume_is_bitwise(config, tmp_path, monkeypatch, 2)


@pytest.mark.parametrize('field,value,match', [
    ('cutmixx', 0.5, 'Unknown augment setting'),
    ('randaugment_policy', 'autoaugment', 'timm.*torchvision'),
    ('randaugment_magnitude', 11.0, r'\[0, 10\]'),
    ('randaugment_magnitude', -1.0, r'\[0, 10\]'),
    ('randaugment_magnitude_std', -0.5, 'magnitude_std'),
    ('randaugment_num_ops', -1, 'randaugment_num_ops'),
    ('mixup_alpha', -0.1, 'mixup_alpha'),
    ('mixup_prob', 1.5, 'probability'),
    ('mixup_switch_prob', -0.1, 'probability'),
    ('random_erasing', 2.0, 'probability'),
    ('random_erasing_mode', 'noise', 'pixel.*rand.*const'),
    ('label_smoothing', 1.0, 'label_smoothing'),
    ('eval_crop_ratio', 0.0, 'eval_crop_ratio'),
])
def test_bad_augment_setting_is_a_one_line_error(tiny_config, field, value, match):
  tiny_config.augment[field] = value
  with pytest.raises(ValueError, match=match) as error:
    experiment_lib.create_experiment(tiny_config)
  assert '\n' not in str(error.value)


def test_torchvision_magnitude_range_and_mixup_needs_labels(tiny_config):
  tiny_config.augment.randaugment_policy = 'torchvision'
  tiny_config.augment.randaugment_magnitude = 30.0
  experiment_lib.validate_config(tiny_config)  # 30 is torchvision's top bin
  tiny_config.augment.randaugment_magnitude = 31.0
  with pytest.raises(ValueError, match=r'\[0, 30\]'):
    experiment_lib.validate_config(tiny_config)
  with pytest.raises(ValueError, match='mixup/cutmix'):
    augment.validate(_augment_config(mixup_alpha=0.2), tasks.Unshuffle)
