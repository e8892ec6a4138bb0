"""Datasets the project knows: their TFDS names, splits, shapes and normalisation statistics.

`digits` is a TFDS builder over scikit-learn's bundled handwritten digits (8×8, 1,797 images),
so the default job needs no download. Every other dataset is an ordinary TFDS dataset that
must already be prepared in the data dir: nothing is downloaded at run time.
"""

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  num_classes: int
  image_shape: tuple  # (H, W, C) as stored
  mean: tuple  # per channel, of images scaled to [0, 1]; the models normalise internally
  std: tuple
  train_split: str = 'train'
  test_split: str = 'test'
  prepare_hint: str = ''


def _tfds_build_hint(name):
  return f'tfds build {name} --data_dir=DATA_DIR (on a machine with internet access)'


DATASETS = {
    'digits': DatasetSpec(10, (8, 8, 1), (0.3055,), (0.3759,),
                          prepare_hint='prepared automatically from scikit-learn'),
    'mnist': DatasetSpec(10, (28, 28, 1), (0.1307,), (0.3081,),
                         prepare_hint=_tfds_build_hint('mnist')),
    'fashion_mnist': DatasetSpec(10, (28, 28, 1), (0.2860,), (0.3530,),
                                 prepare_hint=_tfds_build_hint('fashion_mnist')),
    'cifar10': DatasetSpec(10, (32, 32, 3), (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616),
                           prepare_hint=_tfds_build_hint('cifar10')),
    'cifar100': DatasetSpec(100, (32, 32, 3), (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762),
                            prepare_hint=_tfds_build_hint('cifar100')),
    # Variable-size images; the input pipeline crops/resizes to config.augment.image_size.
    'imagenet2012': DatasetSpec(
        1000, (None, None, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        test_split='validation',
        prepare_hint=('download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar by hand '
                      'into DATA_DIR/downloads/manual/, then run '
                      'tfds build imagenet2012 --data_dir=DATA_DIR')),
}


class DatasetNotPreparedError(ValueError):
  pass


def get_spec(name):
  if name not in DATASETS:
    raise ValueError(f'Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.')
  return DATASETS[name]


def _digits_images_and_labels():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  # sklearn stores 17 grey levels (0..16); map them onto the uint8 range images normally use.
  images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


DIGITS_DEFAULT_DIR = os.path.expanduser('~/.cache/spatialmix_jax/tensorflow_datasets')
DIGITS_NUM_TRAIN = 1437  # of 1797: a fixed 80/20 split, the same on every machine


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits (UCI optdigits test set) as a TFDS dataset."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description='8x8 handwritten digits bundled with scikit-learn.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1)),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # the data ship with scikit-learn
    order = np.random.default_rng(0).permutation(1797)
    return {
        'train': self._generate_examples(order[:DIGITS_NUM_TRAIN]),
        'test': self._generate_examples(order[DIGITS_NUM_TRAIN:]),
    }

  def _generate_examples(self, indices):
    images, labels = _digits_images_and_labels()
    for i in indices:
      yield int(i), {'image': images[i], 'label': int(labels[i])}


def get_builder(name, data_dir=None):
  """The TFDS builder of `name`; `digits` is prepared on first use (it needs no download)."""
  get_spec(name)
  if data_dir is not None and not os.path.isdir(data_dir):
    raise DatasetNotPreparedError(
        f'Data dir {data_dir!r} does not exist; pass the folder that holds prepared TFDS '
        f'datasets with --config.data_dir (or set TFDS_DATA_DIR).')
  if name == 'digits':
    # Its own default folder, so a read-only TFDS_DATA_DIR (shared CIFAR-10) never blocks it.
    builder = Digits(data_dir=data_dir or DIGITS_DEFAULT_DIR)
    if not builder.is_prepared():
      builder.download_and_prepare()
    return builder
  return tfds.builder(name, data_dir=data_dir)


def load_split(builder, split, **as_dataset_kwargs):
  """`builder.as_dataset`, with an unprepared dataset turned into a one-line error.

  TFDS is never asked to download: offline, that retries for minutes before failing.
  """
  try:
    return builder.as_dataset(split=split, **as_dataset_kwargs)
  except AssertionError as e:
    if 'could not find data' not in str(e):
      raise
    name = builder.info.name
    raise DatasetNotPreparedError(
        f'Dataset {name!r} is not prepared under {os.path.dirname(os.path.dirname(builder.data_dir))!r}: '
        f'{get_spec(name).prepare_hint}, or point --config.data_dir / TFDS_DATA_DIR at a '
        f'folder where it is.') from None
