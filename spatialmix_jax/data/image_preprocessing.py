"""Per-example preprocessing in tf.data: decode, crop and flip (then RandAugment), stateless.

Seeds are `(run seed, example index)` (see `input_pipeline.py`), so a resumed run sees the
same images. ImageNet images stay JPEG bytes until the crop, which decodes only the pixels it
keeps (timm's RandomResizedCrop for training, a centre crop for evaluation).
"""

import tensorflow as tf

from spatialmix_jax.data import randaugment


def _to_float(image):
  return tf.image.convert_image_dtype(image, tf.float32)


def _inception_crop(encoded, seed, image_size):
  """Random-area (8%–100%), random-aspect (3/4–4/3) crop decoded straight from the JPEG."""
  shape = tf.image.extract_jpeg_shape(encoded)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
  return tf.image.resize(_to_float(image), (image_size, image_size), method='bicubic')


def _centre_crop(encoded, image_size, crop_ratio):
  """Resize-free centre crop of `crop_ratio` of the short side, then resize to image_size."""
  shape = tf.image.extract_jpeg_shape(encoded)
  height, width = shape[0], shape[1]
  side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * crop_ratio, tf.int32)
  window = tf.stack([(height - side) // 2, (width - side) // 2, side, side])
  image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
  return tf.image.resize(_to_float(image), (image_size, image_size), method='bicubic')


def train_image(image, seed, augment, encoded=False, fill=(0.5,)):
  """Float32 [0, 1] training image; `encoded` images are JPEG bytes (ImageNet).

  `fill` (per channel, in [0, 1]) paints the pixels RandAugment's geometric ops uncover under
  the timm policy (timm fills with the dataset mean); torchvision's fills with 0.
  """
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  if encoded:
    if not augment.inception_crop:
      image = _centre_crop(image, augment.image_size, augment.eval_crop_ratio)
    else:
      image = _inception_crop(image, crop_seed, augment.image_size)
  else:
    image = _to_float(image)
    if augment.crop_padding > 0:
      pad = augment.crop_padding
      shape = tf.shape(image)
      image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
      image = tf.image.stateless_random_crop(image, shape, seed=crop_seed)
  if augment.flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
  image = tf.clip_by_value(image, 0.0, 1.0)
  if augment.randaugment_num_ops > 0:
    # A fold-in rather than a third split keeps the crop and flip streams of earlier runs.
    image = randaugment.randaugment(image, tf.random.experimental.stateless_fold_in(seed, 1),
                                    augment, fill)
  return image


def eval_image(image, augment, encoded=False):
  if encoded:
    return tf.clip_by_value(
        _centre_crop(image, augment.image_size, augment.eval_crop_ratio), 0.0, 1.0)
  return _to_float(image)
