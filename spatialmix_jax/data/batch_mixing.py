"""Batch-level augmentation in tf.data: mixup / cutmix (soft labels) and random erasing, after
timm, seeded by `(run seed, global step)` so that a resumed run mixes the same batches.

Images stay in [0, 1] and the models normalise inside, so an erased pixel that timm draws as
z ~ N(0, 1) after normalisation is written here as mean + std * z (it may leave [0, 1]).
"""

import math

import tensorflow as tf

# Distinguishes batch seeds from example seeds that share the same (seed, index) pair.
_BATCH_SEED_TAG = 0x6d6978


def batch_seed(seed, step_index):
  return tf.random.experimental.stateless_fold_in(
      tf.stack([tf.cast(seed, tf.int64), tf.cast(step_index, tf.int64)]), _BATCH_SEED_TAG)


def _beta(seed, alpha):
  a_seed, b_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  a = tf.random.stateless_gamma([], a_seed, alpha)
  b = tf.random.stateless_gamma([], b_seed, alpha)
  return a / (a + b)


def cutmix_box(seed, height, width, lam):
  """timm's rand_bbox: a box of side sqrt(1 - lam) of the image around a uniform centre,
  clipped to the image. Returns (top, bottom, left, right) int32."""
  ratio = tf.sqrt(1.0 - lam)
  cut_h = tf.cast(height * ratio, tf.int32)
  cut_w = tf.cast(width * ratio, tf.int32)
  y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  cy = tf.random.stateless_uniform([], y_seed, 0, height, dtype=tf.int32)
  cx = tf.random.stateless_uniform([], x_seed, 0, width, dtype=tf.int32)
  top = tf.clip_by_value(cy - cut_h // 2, 0, height)
  bottom = tf.clip_by_value(cy + cut_h // 2, 0, height)
  left = tf.clip_by_value(cx - cut_w // 2, 0, width)
  right = tf.clip_by_value(cx + cut_w // 2, 0, width)
  return top, bottom, left, right


def mix_batch(images, labels, seed, augment, num_classes):
  """timm's Mixup in `batch` mode: one lam per batch, example i mixed with example N-1-i.

  With probability `mixup_prob` the batch is mixed; then cutmix (probability
  `mixup_switch_prob` when both alphas are on) or mixup. Cutmix's lam is corrected to
  1 - (pasted area) / (image area), as timm's correct_lam. Returns images and soft labels
  (N, num_classes) float32, each row summing to 1.
  """
  apply_seed, switch_seed, lam_seed, box_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, num=4))
  one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
  height, width = images.shape[1], images.shape[2]
  if augment.mixup_alpha > 0 and augment.cutmix_alpha > 0:
    use_cutmix = tf.random.stateless_uniform([], switch_seed) < augment.mixup_switch_prob
  else:
    use_cutmix = tf.constant(augment.cutmix_alpha > 0)
  alpha = tf.where(use_cutmix, float(augment.cutmix_alpha), float(augment.mixup_alpha))
  lam = _beta(lam_seed, tf.maximum(alpha, 1e-6))
  flipped = tf.reverse(images, axis=[0])

  top, bottom, left, right = cutmix_box(box_seed, height, width, lam)
  rows = tf.range(height)[:, None]
  cols = tf.range(width)[None, :]
  box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
  cut = tf.where(box[None, :, :, None], flipped, images)
  cut_lam = 1.0 - tf.cast((bottom - top) * (right - left), tf.float32) / (height * width)
  mixed = lam * images + (1.0 - lam) * flipped

  mix = tf.random.stateless_uniform([], apply_seed) < augment.mixup_prob
  lam = tf.where(mix, tf.where(use_cutmix, cut_lam, lam), 1.0)
  images = tf.where(mix, tf.where(use_cutmix, cut, mixed), images)
  soft = lam * one_hot + (1.0 - lam) * tf.reverse(one_hot, axis=[0])
  return images, soft


def random_erase(images, seed, augment, mean, std):
  """timm's RandomErasing (count 1) on each image of a batch with probability `random_erasing`.

  Area 2%–1/3 of the image, log-uniform aspect 0.3–1/0.3, up to 10 attempts for a box that
  fits; the box gets N(0, 1) noise in normalised space per pixel (`pixel`), per channel
  (`rand`) or 0 (`const`), i.e. mean + std * z here.
  """
  n, height, width, channels = images.shape
  n = tf.shape(images)[0]
  attempts = 10
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=6))
  area = tf.random.stateless_uniform([n, attempts], seeds[0], 0.02, 1 / 3) * (height * width)
  log_aspect = tf.random.stateless_uniform([n, attempts], seeds[1], math.log(0.3),
                                           math.log(1 / 0.3))
  aspect = tf.exp(log_aspect)
  h = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
  w = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
  fits = (h < height) & (w < width)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  h = tf.gather(h, first, batch_dims=1)
  w = tf.gather(w, first, batch_dims=1)
  # randint(0, size - h) inclusive, as Python's random.randint.
  u = tf.random.stateless_uniform([n, 2], seeds[2])
  top = tf.cast(tf.floor(u[:, 0] * tf.cast(height - h + 1, tf.float32)), tf.int32)
  left = tf.cast(tf.floor(u[:, 1] * tf.cast(width - w + 1, tf.float32)), tf.int32)
  erase = (tf.random.stateless_uniform([n], seeds[3]) < augment.random_erasing) & tf.reduce_any(
      fits, axis=1)
  rows = tf.range(height)[None, :, None]
  cols = tf.range(width)[None, None, :]
  box = ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None]) &
         (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]) &
         erase[:, None, None])
  mode = augment.random_erasing_mode
  if mode == 'pixel':
    z = tf.random.stateless_normal([n, height, width, channels], seeds[4])
  elif mode == 'rand':
    z = tf.random.stateless_normal([n, 1, 1, channels], seeds[4])
  else:
    z = tf.zeros([n, 1, 1, channels])
  mean = tf.reshape(tf.broadcast_to(tf.constant(mean, tf.float32), [channels]), [1, 1, 1, -1])
  std = tf.reshape(tf.broadcast_to(tf.constant(std, tf.float32), [channels]), [1, 1, 1, -1])
  return tf.where(box[..., None], mean + std * z, images)


def train_batch(batch, seed, augment, num_classes, mean, std):
  """Batch-level ops on a batch {'image', 'label'}: mixup/cutmix, then random erasing."""
  images, labels = batch['image'], batch['label']
  mix_seed, erase_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  if augment.mixup_alpha > 0 or augment.cutmix_alpha > 0:
    images, labels = mix_batch(images, labels, mix_seed, augment, num_classes)
  if augment.random_erasing > 0:
    images = random_erase(images, erase_seed, augment, mean, std)
  return {**batch, 'image': images, 'label': labels}
