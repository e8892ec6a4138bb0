"""Image preprocessing and augmentation inside tf.data, all of it stateless.

Per-example ops (crop, flip, RandAugment) are seeded by `(run seed, example index)`, where the
index counts the examples consumed since step 0; per-batch ops (mixup/cutmix, random erasing)
by `(run seed, global step)`. A resumed run therefore sees exactly the augmented batches an
uninterrupted run would. Every knob lives under `config.augment` (configs/base.py); a zero
turns its part off.

The recipes follow timm (the ConvMixer ImageNet code) and torchvision (the ConvMixer CIFAR-10
code) in the order they apply things: crop -> flip -> RandAugment per example, then
mixup/cutmix over the batch, then random erasing in normalised space (timm's prefetcher).
Images stay in [0, 1] and the models normalise inside, so an erased pixel that timm draws as
z ~ N(0, 1) after normalisation is written here as mean + std * z (it may leave [0, 1]).
"""

import math

import tensorflow as tf

RANDAUGMENT_POLICIES = ('timm', 'torchvision')
ERASING_MODES = ('pixel', 'rand', 'const')
# timm clips magnitudes to _LEVEL_DENOM = 10 (no `mmax`); torchvision has 31 bins, 0..30.
MAX_MAGNITUDE = {'timm': 10.0, 'torchvision': 30.0}

_FIELDS = ('crop_padding', 'flip', 'inception_crop', 'image_size', 'eval_crop_ratio',
           'randaugment_num_ops', 'randaugment_magnitude', 'randaugment_magnitude_std',
           'randaugment_policy', 'mixup_alpha', 'cutmix_alpha', 'mixup_prob',
           'mixup_switch_prob', 'random_erasing', 'random_erasing_mode', 'label_smoothing')

# Distinguishes batch seeds from example seeds that share the same (seed, index) pair.
_BATCH_SEED_TAG = 0x6d6978


def _require(condition, message):
  if not condition:
    raise ValueError(message)


def validate(augment, task='classification'):
  """One-line ValueErrors for `config.augment`, before any data is read."""
  unknown = sorted(set(augment.keys()) - set(_FIELDS))
  _require(not unknown, f'Unknown augment setting(s) {unknown}; valid: {_FIELDS}.')
  a = augment
  for name in ('crop_padding', 'image_size', 'randaugment_num_ops'):
    value = a[name]
    _require(isinstance(value, int) and value >= 0,
             f'augment.{name} must be an integer >= 0, got {value!r}.')
  _require(a.randaugment_policy in RANDAUGMENT_POLICIES,
           f'Unknown augment.randaugment_policy {a.randaugment_policy!r}; choose one of '
           f'{RANDAUGMENT_POLICIES}.')
  top = MAX_MAGNITUDE[a.randaugment_policy]
  _require(0 <= a.randaugment_magnitude <= top,
           f'augment.randaugment_magnitude must be in [0, {top:g}] for the '
           f'{a.randaugment_policy} policy, got {a.randaugment_magnitude}.')
  _require(a.randaugment_magnitude_std >= 0,
           f'augment.randaugment_magnitude_std must be >= 0, got {a.randaugment_magnitude_std}.')
  for name in ('mixup_alpha', 'cutmix_alpha'):
    _require(a[name] >= 0, f'augment.{name} must be >= 0 (0 turns it off), got {a[name]}.')
  for name in ('mixup_prob', 'mixup_switch_prob', 'random_erasing'):
    _require(0 <= a[name] <= 1, f'augment.{name} is a probability in [0, 1], got {a[name]}.')
  _require(a.random_erasing_mode in ERASING_MODES,
           f'Unknown augment.random_erasing_mode {a.random_erasing_mode!r}; choose one of '
           f'{ERASING_MODES}.')
  _require(0 <= a.label_smoothing < 1,
           f'augment.label_smoothing must be in [0, 1), got {a.label_smoothing}.')
  _require(0 < a.eval_crop_ratio <= 1,
           f'augment.eval_crop_ratio must be in (0, 1], got {a.eval_crop_ratio}.')
  _require(task == 'classification' or not (a.mixup_alpha or a.cutmix_alpha),
           f'mixup/cutmix mix class labels; task {task!r} has none: set augment.mixup_alpha '
           'and augment.cutmix_alpha to 0.')


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
    image = randaugment(image, tf.random.experimental.stateless_fold_in(seed, 1), augment, fill)
  return image


def eval_image(image, augment, encoded=False):
  if encoded:
    return tf.clip_by_value(
        _centre_crop(image, augment.image_size, augment.eval_crop_ratio), 0.0, 1.0)
  return _to_float(image)


# ----------------------------------------------------------------------------------------
# RandAugment: image ops on float [0, 1] HWC images, with PIL's semantics (uint8 levels
# where PIL quantises: posterize, solarize, equalize).


def _blend(degenerate, image, factor):
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _grey(image):
  if image.shape[-1] != 3:
    return image
  # PIL's "L" conversion weights (ITU-R 601-2 luma).
  luma = tf.tensordot(image, tf.constant([0.299, 0.587, 0.114]), axes=1)[..., None]
  return tf.broadcast_to(luma, tf.shape(image))


def _brightness(image, factor):
  return _blend(tf.zeros_like(image), image, factor)


def _color(image, factor):
  return _blend(_grey(image), image, factor)


def _contrast(image, factor):
  # PIL blends with the (rounded) mean grey level of the whole image.
  mean = tf.round(tf.reduce_mean(_grey(image)[..., :1]) * 255.0) / 255.0
  return _blend(tf.fill(tf.shape(image), mean), image, factor)


def _sharpness(image, factor):
  # PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13) on the interior; borders kept.
  channels = image.shape[-1]
  kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
  smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], 'VALID')[0]
  degenerate = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  interior = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
  degenerate = interior * degenerate + (1 - interior) * image
  return _blend(degenerate, image, factor)


def _levels(image):
  return tf.round(image * 255.0)


def _posterize(image, bits):
  step = tf.pow(2.0, 8.0 - tf.cast(bits, tf.float32))
  return tf.floor(_levels(image) / step) * step / 255.0


def _solarize(image, threshold):
  levels = _levels(image)
  return tf.where(levels >= threshold, 255.0 - levels, levels) / 255.0


def _solarize_add(image, addition, threshold=128.0):
  levels = _levels(image)
  return tf.where(levels < threshold, tf.minimum(levels + addition, 255.0), levels) / 255.0


def _invert(image):
  return 1.0 - image


def _autocontrast(image):
  lo = tf.reduce_min(image, axis=(0, 1), keepdims=True)
  hi = tf.reduce_max(image, axis=(0, 1), keepdims=True)
  scaled = (image - lo) / tf.maximum(hi - lo, 1e-8)
  return tf.where(hi > lo, scaled, image)


def _equalize_channel(levels):
  """PIL's ImageOps.equalize on one channel of uint8 levels (float)."""
  ints = tf.cast(levels, tf.int32)
  hist = tf.math.bincount(tf.reshape(ints, [-1]), minlength=256, maxlength=256)
  last = tf.gather(hist, tf.reduce_max(tf.where(hist > 0)[:, 0]))
  step = (tf.reduce_sum(hist) - last) // 255
  before = tf.cumsum(hist, exclusive=True)
  lut = tf.minimum((before + step // 2) // tf.maximum(step, 1), 255)
  return tf.where(step > 0, tf.cast(tf.gather(lut, ints), tf.float32), levels)


def _equalize(image):
  levels = _levels(image)
  channels = [_equalize_channel(levels[..., c]) for c in range(image.shape[-1])]
  return tf.stack(channels, axis=-1) / 255.0


def _affine(image, matrix, fill, interpolation):
  """PIL's Image.transform(AFFINE): output pixel (x, y) reads input (a x + b y + c, d x + e y + f)."""
  transform = tf.concat([tf.cast(tf.stack(matrix), tf.float32), tf.zeros([2])], 0)[None]
  channels = image.shape[-1]
  # The fill is one scalar per call: paint a constant-1 extra channel, then blend the
  # per-channel fill into the uncovered pixels.
  padded = tf.concat([image, tf.ones_like(image[..., :1])], -1)
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=padded[None], transforms=transform, output_shape=tf.shape(image)[:2],
      fill_value=0.0, interpolation=interpolation, fill_mode='CONSTANT')[0]
  coverage = out[..., channels:]
  fill = tf.broadcast_to(tf.constant(fill, tf.float32), [channels])
  return out[..., :channels] + (1.0 - coverage) * fill


def _rotate(image, degrees, fill, interpolation):
  # PIL's Image.rotate: counter-clockwise about the image centre, which is (size - 1) / 2 in
  # the pixel-index coordinates the TF kernel uses (PIL puts pixel centres at +0.5).
  height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
  angle = -degrees * math.pi / 180.0
  a, b, d, e = tf.cos(angle), tf.sin(angle), -tf.sin(angle), tf.cos(angle)
  cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
  c = a * -cx + b * -cy + cx
  f = d * -cx + e * -cy + cy
  return _affine(image, [a, b, c, d, e, f], fill, interpolation)


def _shear_x(image, factor, fill, interpolation):
  return _affine(image, [1.0, factor, 0.0, 0.0, 1.0, 0.0], fill, interpolation)


def _shear_y(image, factor, fill, interpolation):
  return _affine(image, [1.0, 0.0, 0.0, factor, 1.0, 0.0], fill, interpolation)


def _translate_x(image, pixels, fill, interpolation):
  return _affine(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0], fill, interpolation)


def _translate_y(image, pixels, fill, interpolation):
  return _affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels], fill, interpolation)


def _ops(policy, fill):
  """[(name, fn(image, level, sign) -> image)] of `policy`; `sign` is ±1.

  timm: `rand-...-inc1` (_RAND_INCREASING_TRANSFORMS of timm/data/auto_augment.py), levels in
  [0, 10]. torchvision: transforms.RandAugment's 14 ops at level `magnitude` of 31 bins
  (0..30), fill 0 and nearest-neighbour resampling, its defaults.
  """
  if policy == 'timm':
    # timm picks bilinear or bicubic at random per op; the TF kernel has bilinear, not bicubic.
    geo = dict(fill=fill, interpolation='BILINEAR')
    r = lambda level: level / 10.0
    enhance = lambda fn: lambda x, level, sign: fn(x, tf.maximum(0.1, 1.0 + sign * 0.9 * r(level)))
    width = lambda x: tf.cast(tf.shape(x)[1], tf.float32)
    height = lambda x: tf.cast(tf.shape(x)[0], tf.float32)
    return [
        ('AutoContrast', lambda x, level, sign: _autocontrast(x)),
        ('Equalize', lambda x, level, sign: _equalize(x)),
        ('Invert', lambda x, level, sign: _invert(x)),
        ('Rotate', lambda x, level, sign: _rotate(x, sign * 30.0 * r(level), **geo)),
        ('PosterizeIncreasing', lambda x, level, sign: _posterize(x, 4.0 - tf.floor(4.0 * r(level)))),
        ('SolarizeIncreasing', lambda x, level, sign: _solarize(x, 256.0 - tf.floor(256.0 * r(level)))),
        ('SolarizeAdd', lambda x, level, sign: _solarize_add(x, tf.floor(110.0 * r(level)))),
        ('ColorIncreasing', enhance(_color)),
        ('ContrastIncreasing', enhance(_contrast)),
        ('BrightnessIncreasing', enhance(_brightness)),
        ('SharpnessIncreasing', enhance(_sharpness)),
        ('ShearX', lambda x, level, sign: _shear_x(x, sign * 0.3 * r(level), **geo)),
        ('ShearY', lambda x, level, sign: _shear_y(x, sign * 0.3 * r(level), **geo)),
        ('TranslateXRel', lambda x, level, sign: _translate_x(x, sign * 0.45 * r(level) * width(x), **geo)),
        ('TranslateYRel', lambda x, level, sign: _translate_y(x, sign * 0.45 * r(level) * height(x), **geo)),
    ]
  geo = dict(fill=(0.0,), interpolation='NEAREST')
  r = lambda level: level / 30.0
  enhance = lambda fn: lambda x, level, sign: fn(x, 1.0 + sign * 0.9 * r(level))
  # torchvision: translate up to 150/331 of the size, truncated to whole pixels.
  shift = lambda x, axis, level, sign: sign * tf.floor(
      150.0 / 331.0 * tf.cast(tf.shape(x)[axis], tf.float32) * r(level))
  return [
      ('Identity', lambda x, level, sign: x),
      ('ShearX', lambda x, level, sign: _shear_x(x, sign * 0.3 * r(level), **geo)),
      ('ShearY', lambda x, level, sign: _shear_y(x, sign * 0.3 * r(level), **geo)),
      ('TranslateX', lambda x, level, sign: _translate_x(x, shift(x, 1, level, sign), **geo)),
      ('TranslateY', lambda x, level, sign: _translate_y(x, shift(x, 0, level, sign), **geo)),
      ('Rotate', lambda x, level, sign: _rotate(x, sign * 30.0 * r(level), **geo)),
      ('Brightness', enhance(_brightness)),
      ('Color', enhance(_color)),
      ('Contrast', enhance(_contrast)),
      ('Sharpness', enhance(_sharpness)),
      # 8 - round(level / 7.5) bits; torch rounds half to even, as tf.round does.
      ('Posterize', lambda x, level, sign: _posterize(x, 8.0 - tf.round(level / 7.5))),
      ('Solarize', lambda x, level, sign: _solarize(x, 255.0 * (1.0 - r(level)))),
      ('AutoContrast', lambda x, level, sign: _autocontrast(x)),
      ('Equalize', lambda x, level, sign: _equalize(x)),
  ]


def randaugment(image, seed, augment, fill=(0.5,)):
  """`augment.randaugment_num_ops` ops drawn uniformly with replacement, stateless in `seed`.

  timm applies each drawn op with probability 0.5 and a magnitude drawn from
  N(magnitude, magnitude_std) clipped to [0, 10]; torchvision always applies it.
  """
  policy = augment.randaugment_policy
  ops = _ops(policy, tuple(float(round(255 * m)) / 255 for m in fill))
  top = MAX_MAGNITUDE[policy]
  apply_prob = 0.5 if policy == 'timm' else 1.0
  for layer_seed in tf.unstack(tf.random.experimental.stateless_split(
      seed, num=augment.randaugment_num_ops)):
    op_seed, prob_seed, mag_seed, sign_seed = tf.unstack(
        tf.random.experimental.stateless_split(layer_seed, num=4))
    index = tf.random.stateless_uniform([], op_seed, 0, len(ops), dtype=tf.int32)
    level = tf.constant(float(augment.randaugment_magnitude))
    if augment.randaugment_magnitude_std > 0:
      level += augment.randaugment_magnitude_std * tf.random.stateless_normal([], mag_seed)
    level = tf.clip_by_value(level, 0.0, top)
    sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
    branches = [lambda fn=fn: fn(image, level, sign) for _, fn in ops]
    augmented = tf.ensure_shape(tf.switch_case(index, branches), image.shape)
    if apply_prob < 1.0:
      keep = tf.random.stateless_uniform([], prob_seed) >= apply_prob
      augmented = tf.where(keep, image, augmented)
    image = tf.clip_by_value(augmented, 0.0, 1.0)
  return image


# ----------------------------------------------------------------------------------------
# Batch-level augmentation: mixup / cutmix (soft labels) and random erasing.


def has_batch_ops(augment):
  return augment.mixup_alpha > 0 or augment.cutmix_alpha > 0 or augment.random_erasing > 0


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
