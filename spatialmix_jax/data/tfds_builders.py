"""TFDS builders of the datasets in `datasets.py`, and reading their splits.

`digits` is a TFDS builder over scikit-learn's bundled handwritten digits (8×8, 1,797 images),
so the default job needs no download: it is prepared on first use into the project's cache
(`cache.py`). Every other dataset is an ordinary TFDS dataset that must already be prepared in
the data dir: nothing is downloaded at run time.
"""

import contextlib
import fcntl
import os
import shutil
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from spatialmix_jax.infra import cache
from spatialmix_jax.data import datasets
from spatialmix_jax.infra import errors


class DatasetNotPreparedError(errors.DataError):
  """A dataset (or data dir) that is not where the config says; nothing is downloaded."""


def _digits_images_and_labels():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  # sklearn stores 17 grey levels (0..16); map them onto the uint8 range images normally use.
  images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


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


def _digits_dir(data_dir):
  return os.path.join(data_dir, Digits.name, str(Digits.VERSION))


def _digits_ready(data_dir):
  # dataset_info.json is written last: a folder without it is a preparation that was killed.
  return os.path.exists(os.path.join(_digits_dir(data_dir), 'dataset_info.json'))


@contextlib.contextmanager
def _exclusive(lock_path):
  """An exclusive lock between processes (the runs of a sweep started at once)."""
  with open(lock_path, 'a') as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


_PREPARING_PREFIX = 'digits-preparing-'


def prepared_digits_dir():
  """The cache's TFDS data dir, with `digits` prepared in it (built here if need be).

  One process prepares at a time, into a private folder renamed into place when complete, so
  a run killed while preparing leaves no half-prepared dataset behind, and one found anyway
  (a folder without dataset_info.json, from an older layout) is rebuilt.
  """
  data_dir = os.path.join(cache.root(), 'tensorflow_datasets')
  if _digits_ready(data_dir):
    return data_dir
  data_dir = cache.writable_dir('tensorflow_datasets')
  with _exclusive(os.path.join(data_dir, 'digits.lock')):
    if _digits_ready(data_dir):  # another process finished it while we waited
      return data_dir
    # Holding the lock, any leftover private folder is a killed preparation's.
    for name in os.listdir(data_dir):
      if name.startswith(_PREPARING_PREFIX):
        shutil.rmtree(os.path.join(data_dir, name), ignore_errors=True)
    shutil.rmtree(_digits_dir(data_dir), ignore_errors=True)
    private = tempfile.mkdtemp(prefix=_PREPARING_PREFIX, dir=data_dir)
    try:
      Digits(data_dir=private).download_and_prepare()
      os.makedirs(os.path.dirname(_digits_dir(data_dir)), exist_ok=True)
      os.rename(_digits_dir(private), _digits_dir(data_dir))
    finally:
      shutil.rmtree(private, ignore_errors=True)
  return data_dir


def get_builder(name, data_dir=None):
  """The TFDS builder of `name`; `digits` is prepared on first use (it needs no download)."""
  datasets.get_spec(name)
  if data_dir is not None and not os.path.isdir(data_dir):
    raise DatasetNotPreparedError(
        f'Data dir {data_dir!r} does not exist; pass the folder that holds prepared TFDS '
        f'datasets with --config.data_dir (or set TFDS_DATA_DIR).')
  if name == 'digits':
    # Read from data_dir only where it is prepared there: a read-only TFDS_DATA_DIR (the shared
    # CIFAR-10, say) must never block the embedded dataset.
    if data_dir is None or not _digits_ready(data_dir):
      data_dir = prepared_digits_dir()
    return Digits(data_dir=data_dir)
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
    root = os.path.dirname(os.path.dirname(builder.data_dir))
    raise DatasetNotPreparedError(
        f'Dataset {name!r} is not prepared under {root!r}: '
        f'{datasets.get_spec(name).prepare_hint}, or point --config.data_dir / TFDS_DATA_DIR '
        'at a folder where it is.') from None
