"""tf.data throughput of the training recipes, next to what a CPU train step consumes.

Rows:
  * CIFAR recipe (configs/convmixer_cifar10_256_8.py: flip + torchvision RandAugment 2/12) on
    the real CIFAR-10 of --data_dir, batch 512.
  * ImageNet recipe (configs/convmixer_imagenet.py: inception crop from JPEG, flip, timm
    RandAugment m9 mstd0.5, mixup/cutmix, random erasing) on mock 224x224 JPEG ImageNet
    (tfds.testing.mock_data), batch 64 (one of the original's GPUs).
  * The train step of a ConvMixer-128/4 k5 p2 on 32x32 inputs (batch 128, float32) on this
    CPU: the rate an input pipeline has to sustain here.
Each pipeline is timed with tf.data limited to 1 thread (the per-core rate) and with every
core. Keep it to a few minutes: `python benchmarks/input_pipeline.py --batches=6`.
"""

import json
import os
import sys
import time

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import convmixer_cifar10_256_8
from configs import convmixer_imagenet
from configs import default
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.training import train_state
from spatialmix_jax.training import train_step

_DATA_DIR = flags.DEFINE_string('data_dir', '/work/shared/tensorflow_datasets',
                                'Folder with prepared TFDS cifar10.')
_BATCHES = flags.DEFINE_integer('batches', 6, 'Timed batches per row (after one warm-up).')
_OUTPUT = flags.DEFINE_string(
    'output', os.path.join(os.path.dirname(__file__), 'results', 'input_pipeline_cpu.json'),
    'Where to write the JSON results.')


def _time_pipeline(config, threads, num_batches):
  experiment = experiment_lib.create_experiment(config)
  data = input_pipeline.create_train_data(experiment)
  options = tf.data.Options()
  if threads:
    options.threading.private_threadpool_size = threads
  ds = data.epoch_dataset(0).with_options(options)
  batches = iter(ds.as_numpy_iterator())
  next(batches)  # warm-up: graph building and the first fill of the shuffle buffer
  started = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  elapsed = time.perf_counter() - started
  return num_batches * data.local_batch_size / elapsed


def _mock_imagenet(num_examples=256, size=224):
  rng = np.random.default_rng(0)
  # Smooth random images (JPEG-compressible like photos), 16 distinct ones reused.
  pool = []
  for _ in range(16):
    small = rng.integers(0, 256, (size // 16, size // 16, 3)).astype(np.uint8)
    image = tf.image.resize(small, (size, size), 'bilinear')
    pool.append(tf.io.encode_jpeg(tf.cast(image, tf.uint8), quality=90).numpy())

  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    images = tf.constant([pool[i % len(pool)] for i in range(num_examples)])
    labels = tf.constant(np.arange(num_examples) % 1000, tf.int64)
    return tf.data.Dataset.from_tensor_slices({'image': images, 'label': labels})

  return tfds.testing.mock_data(num_examples=num_examples, as_dataset_fn=as_dataset)


def _train_step_rate(num_steps=5, batch_size=128):
  config = default.get_config()
  config.dataset = 'cifar10'
  config.mode = 'full'
  config.model.update(width=128, depth=4, kernel_size=5, patch_size=2)
  config.batch_size = batch_size
  with tfds.testing.mock_data(num_examples=batch_size):
    experiment = experiment_lib.create_experiment(config)
  tx, _ = train_state.create_optimizer(experiment, 1000, 100)
  state = jax.jit(lambda: train_state.init_state(experiment, tx))()
  step = train_step.compile_train_step(experiment, tx)
  rng = np.random.default_rng(0)
  batch = {'image': rng.uniform(size=(batch_size, 32, 32, 3)).astype(np.float32),
           'label': rng.integers(0, 10, batch_size).astype(np.int32)}
  state, metrics = step(state, batch)  # compile
  jax.block_until_ready(metrics)
  started = time.perf_counter()
  for _ in range(num_steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return num_steps * batch_size / (time.perf_counter() - started)


def main(argv):
  del argv
  cores = os.cpu_count()
  rows = []

  cifar = convmixer_cifar10_256_8.get_config()
  cifar.data_dir = _DATA_DIR.value
  cifar.input.cache = False
  cifar.input.shuffle_buffer = 2048  # the benchmark times augmentation, not a 50k-buffer fill
  imagenet = convmixer_imagenet.get_config()
  imagenet.batch_size = 64
  imagenet.input.shuffle_buffer = 256
  for name, config, context in (
      ('cifar10 recipe (real CIFAR-10, batch 512)', cifar, None),
      ('imagenet recipe (mock 224x224 JPEG, batch 64)', imagenet,
       lambda: _mock_imagenet(num_examples=64 * (_BATCHES.value + 1)))):
    if name.startswith('cifar') and not os.path.isdir(os.path.join(_DATA_DIR.value, 'cifar10')):
      print(f'skipping {name}: no cifar10 under {_DATA_DIR.value}')
      continue
    for threads in (1, cores):
      if context is None:
        rate = _time_pipeline(config, threads, _BATCHES.value)
      else:
        with context():
          rate = _time_pipeline(config, threads, _BATCHES.value)
      rows.append(dict(what=name, threads=threads, images_per_s=rate,
                       images_per_s_per_core=rate / threads))

  rate = _train_step_rate()
  rows.append(dict(what='train step ConvMixer-128/4 k5 p2, 32x32, batch 128, float32',
                   threads=cores, images_per_s=rate, images_per_s_per_core=rate / cores))

  print(f'{"what":62s} {"threads":>7s} {"images/s":>10s} {"per core":>10s}')
  for row in rows:
    print(f'{row["what"]:62s} {row["threads"]:7d} {row["images_per_s"]:10.1f} '
          f'{row["images_per_s_per_core"]:10.1f}')
  result = dict(host=dict(cpu_count=cores, backend=jax.default_backend(),
                          load_average=os.getloadavg()),
                timed_batches=_BATCHES.value, rows=rows)
  os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
  with open(_OUTPUT.value, 'w') as f:
    json.dump(result, f, indent=2)
  print('wrote', _OUTPUT.value)


if __name__ == '__main__':
  app.run(main)
