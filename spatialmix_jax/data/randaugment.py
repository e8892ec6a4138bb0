"""RandAugment in tf.data: image ops on float [0, 1] HWC images with PIL's semantics (uint8
levels where PIL quantises: posterize, solarize, equalize), under timm's or torchvision's
policy (`augment.randaugment_policy`), stateless in the seed it is given.
"""

import math

import tensorflow as tf

from spatialmix_jax.data import augment as augment_settings


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
  top = augment_settings.MAX_MAGNITUDE[policy]
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
