"""TFDS → tf.data input: each process reads its own part of every split.

Training order is a pure function of `(config.seed, epoch)`: every epoch is read, shuffled
with a seed derived from both, cut to whole batches, and augmented with per-example stateless
seeds. Resuming at step s therefore rebuilds epoch `s // steps_per_epoch`, skips the batches
already consumed and continues with exactly the batches an uninterrupted run would see.

Evaluation reads every example of the test split exactly once: the last local batch is padded
and carries a `mask` of the real examples; processes with fewer batches emit fully masked ones
so that every process runs the same number of (collective) eval steps.
"""

import dataclasses
import math

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from spatialmix_jax.data import augment
from spatialmix_jax.data import batch_mixing
from spatialmix_jax.data import datasets
from spatialmix_jax.data import image_preprocessing
from spatialmix_jax.data import tfds_builders
from spatialmix_jax.infra.errors import ConfigError
from spatialmix_jax.infra.errors import DataError


def _epoch_seed(seed, epoch):
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _is_encoded(spec):
  # Variable-size datasets (ImageNet) stay JPEG bytes until the crop, which decodes only
  # the pixels it keeps.
  return spec.image_shape[0] is None


def _decoders(spec):
  return {'image': tfds.decode.SkipDecoding()} if _is_encoded(spec) else None


def _check_batch(global_batch, what):
  if global_batch % jax.device_count():
    raise ConfigError(
        f'{what} {global_batch} is not divisible by the {jax.device_count()} devices; '
        f'pick a multiple of {jax.device_count()}.')
  return global_batch // jax.process_count()


@dataclasses.dataclass
class TrainData:
  """The training stream of one process."""
  config: object
  builder: object
  spec: datasets.DatasetSpec
  local_batch_size: int
  steps_per_epoch: int
  _cached_split: object = None

  def _read_epoch(self, epoch):
    split = tfds.split_for_jax_process(self.spec.train_split, drop_remainder=True)
    if self.config.input.cache:
      if self._cached_split is None:
        self._cached_split = tfds_builders.load_split(
            self.builder, split, shuffle_files=False, decoders=_decoders(self.spec)).cache()
      return self._cached_split
    read_config = tfds.ReadConfig(shuffle_seed=_epoch_seed(self.config.seed, epoch),
                                  shuffle_reshuffle_each_iteration=False)
    return tfds_builders.load_split(self.builder, split, shuffle_files=True,
                               read_config=read_config, decoders=_decoders(self.spec))

  def epoch_dataset(self, epoch, skip_batches=0):
    """Batches of `epoch` (local to this process) from batch `skip_batches` on."""
    config = self.config
    examples_per_epoch = self.steps_per_epoch * self.local_batch_size
    ds = self._read_epoch(epoch)
    ds = ds.shuffle(config.input.shuffle_buffer, seed=_epoch_seed(config.seed, epoch),
                    reshuffle_each_iteration=False)
    ds = ds.take(examples_per_epoch).skip(skip_batches * self.local_batch_size)
    # Seeds index examples globally, so no two processes or epochs share augmentations.
    first = epoch * examples_per_epoch + skip_batches * self.local_batch_size
    encoded = _is_encoded(self.spec)
    process_index, process_count = jax.process_index(), jax.process_count()

    def preprocess(index, example):
      seed = tf.stack([tf.constant(config.seed, tf.int64),
                       index * process_count + process_index])
      image = image_preprocessing.train_image(example['image'], seed, config.augment, encoded,
                                              fill=self.spec.mean)
      return {'image': image, 'label': tf.cast(example['label'], tf.int32)}

    def batch_ops(step, batch):
      # Seeded by the global step, so a resumed run mixes and erases the same batches.
      seed = batch_mixing.batch_seed(config.seed, step * process_count + process_index)
      return batch_mixing.train_batch(batch, seed, config.augment, self.spec.num_classes,
                                      self.spec.mean, self.spec.std)

    ds = ds.enumerate(start=first).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(self.local_batch_size, drop_remainder=True)
    if augment.has_batch_ops(config.augment):
      first_step = epoch * self.steps_per_epoch + skip_batches
      ds = ds.enumerate(start=first_step).map(batch_ops, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(config.input.prefetch)

  def iterate(self, start_step=0):
    """Endless local batches (numpy) from global step `start_step` on."""
    epoch, skip = divmod(start_step, self.steps_per_epoch)
    while True:
      yield from self.epoch_dataset(epoch, skip).as_numpy_iterator()
      epoch, skip = epoch + 1, 0


def create_train_data(experiment):
  """The training stream of this process for the experiment's dataset and config."""
  config, spec = experiment.config, experiment.spec
  builder = tfds_builders.get_builder(config.dataset, config.data_dir)
  local_batch = _check_batch(config.batch_size, 'Global batch_size')
  split = tfds.split_for_jax_process(spec.train_split, drop_remainder=True)
  num_local = _num_examples(
      tfds_builders.load_split(builder, split, shuffle_files=False, decoders=_decoders(spec)))
  steps_per_epoch = num_local // local_batch
  if steps_per_epoch == 0:
    raise ConfigError(
        f'batch_size {config.batch_size} is larger than the {num_local} training examples '
        f'each of the {jax.process_count()} processes reads; lower batch_size.')
  return TrainData(config, builder, spec, local_batch, steps_per_epoch)


def _num_examples(ds):
  count = int(ds.cardinality())
  if count < 0:  # unknown: count once
    count = int(ds.reduce(0, lambda n, _: n + 1))
  return count


@dataclasses.dataclass
class EvalData:
  """The test split of one process, padded to whole batches with a `mask`."""
  dataset: object
  local_batch_size: int
  num_local_examples: int
  num_steps: int  # the same on every process

  def iterate(self):
    produced = 0
    template = None
    for batch in self.dataset.as_numpy_iterator():
      n = len(batch['label'])
      pad = self.local_batch_size - n
      batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
               for k, v in batch.items()}
      batch['mask'] = (np.arange(self.local_batch_size) < n).astype(np.float32)
      template = batch
      produced += 1
      yield batch
    if produced < self.num_steps and template is None:
      raise DataError('This process received no test examples; use fewer processes.')
    for _ in range(self.num_steps - produced):
      yield {k: np.zeros_like(v) for k, v in template.items()}


def create_eval_data(experiment, max_examples=-1):
  """This process's part of the test split, padded to whole batches (`EvalData`)."""
  config, spec = experiment.config, experiment.spec
  builder = tfds_builders.get_builder(config.dataset, config.data_dir)
  local_batch = _check_batch(config.eval_batch_size, 'Global eval_batch_size')
  split = tfds.split_for_jax_process(spec.test_split, drop_remainder=False)
  ds = tfds_builders.load_split(builder, split, shuffle_files=False, decoders=_decoders(spec))
  if max_examples > 0:
    ds = ds.take(max(1, max_examples // jax.process_count()))
  num_local = _num_examples(ds)
  if config.input.cache:
    ds = ds.cache()
  encoded = _is_encoded(spec)

  def preprocess(example):
    return {'image': image_preprocessing.eval_image(example['image'], config.augment, encoded),
            'label': tf.cast(example['label'], tf.int32)}

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).batch(local_batch)
  ds = ds.prefetch(config.input.prefetch)
  local_steps = math.ceil(num_local / local_batch)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    local_steps = int(np.max(multihost_utils.process_allgather(np.array(local_steps))))
  return EvalData(ds, local_batch, num_local, local_steps)
