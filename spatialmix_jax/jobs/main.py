"""Trains or evaluates a config: what the repository's `main.py` runs, and what an installed
package runs without the repository (`spatialmix-jax ...` or `python -m spatialmix_jax.jobs.main
...`, with a config file given by its path).

  python main.py --config=configs/default.py --workdir=/tmp/digits
  python main.py --config=configs/default.py --workdir=/tmp/digits --job=eval
  python main.py --config=configs/convmixer_cifar10.py --config.mode=space --workdir=...

`--job` is what to do with the workdir (train, which resumes it, or eval); `--config.mode` is
which mixers the model learns (full, chans, space). A setting, file or folder that cannot work
is one `error:` line and exit code 2 (`errors.UserError`); anything else is a bug or a
library's failure and keeps its traceback, whose last line names the workdir and the step.
"""

import logging as std_logging
import os

from spatialmix_jax.infra import host_memory

if __name__ == '__main__':  # a program of its own: before any import starts a thread
  host_memory.retain_freed_memory()

# TensorFlow only feeds data; its C++ start-up notes (oneDNN, CPU features) are not the user's
# business. Set before anything imports it.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from spatialmix_jax.config import cli
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags, defined when it runs (importing this module defines none)."""
  flags.DEFINE_string('workdir', None, 'Folder for checkpoints, logs and results.json.')
  flags.DEFINE_enum('job', 'train', ['train', 'eval'],
                    'train (resumes the workdir) or eval (its newest checkpoint).')
  flags.DEFINE_enum('distributed', 'auto', ['auto', 'yes', 'no'],
                    'Call jax.distributed.initialize(): auto does on a multi-host TPU slice or '
                    'when --num_processes > 1.')
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (GPU multi-host).')
  flags.DEFINE_integer('num_processes', None, 'Number of processes (GPU multi-host).')
  flags.DEFINE_integer('process_id', None, 'This process (GPU multi-host).')
  config_flags.DEFINE_config_file('config', None, 'A config file, e.g. configs/default.py.',
                                  lock_config=True)
  flags.mark_flags_as_required(['config', 'workdir'])


def _multihost_tpu():
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  return len([h for h in hosts.split(',') if h]) > 1


class _QuietLibraries(std_logging.Filter):
  """Drops the per-save INFO chatter of Orbax (dozens of lines per checkpoint)."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  memory = host_memory.retain_freed_memory()  # a no-op where the entry point already did
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}: every setting is a --flag or a --config.FIELD.')
  logging.get_absl_logger().addFilter(_QuietLibraries())
  from spatialmix_jax.config import experiment  # pylint: disable=g-import-not-at-top
  with cli.user_errors_as_one_line():
    # A value that cannot work is the user's to fix: one line, before anything else is done.
    experiment.validate_config(FLAGS.config)
  # TensorFlow only feeds data: keep it off the accelerators JAX owns.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
  import jax  # pylint: disable=g-import-not-at-top

  wants_distributed = FLAGS.distributed == 'yes' or (
      FLAGS.distributed == 'auto' and ((FLAGS.num_processes or 1) > 1 or _multihost_tpu()))
  if wants_distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  logging.info('JAX process %d of %d, %d local / %d global devices (%s); freed host memory '
               'kept for reuse: %s.', jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(), jax.default_backend(), memory)

  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.jobs import train  # pylint: disable=g-import-not-at-top
  with cli.user_errors_as_one_line():
    if FLAGS.job == 'train':
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
      evaluation.evaluate(FLAGS.config, FLAGS.workdir)


def run():
  """The console script `spatialmix-jax`."""
  host_memory.retain_freed_memory()  # before the config file's imports start threads
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
