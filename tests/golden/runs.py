"""Fixed small runs whose results.json / eval.json metrics are recorded in `results.json` here,
so that a change meant to keep behaviour (a refactor, a faster kernel) is checked bitwise.

  python -m tests.golden.runs        # from the repository root: re-records, after a change
                                     # that is meant to alter results (say why in the commit)

Floating-point results depend on the CPU's vector instructions and on the XLA version, so
the record carries both and the check is bitwise only where they match.
"""

import json
import os
import platform
import sys
import tempfile

RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results.json')
METRICS = ('test_loss', 'test_accuracy', 'test_psnr', 'scrambled_psnr', 'num_test_examples',
           'step', 'frozen_unchanged')


def tiny_budget(config):
  """A seconds-sized run of `config`: a minute model, six steps (also the tests' fixture)."""
  config.model.width = 16
  config.model.depth = 2
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_train_steps = 6
  config.log_every_steps = 3
  config.checkpoint_every_steps = 3
  return config


def _tiny(config):
  tiny_budget(config)
  # A constant rate moves the weights from the first step (a one-cycle warm-up would not).
  config.optimizer.schedule = 'constant'
  config.optimizer.learning_rate = 0.005
  return config


def configs():
  """{name: config} of the recorded runs, each a few seconds on 2 CPU cores."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from configs import unshuffle_digits  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.config import config_schema  # pylint: disable=g-import-not-at-top
  runs = {}
  runs['convmixer_chans'] = _tiny(default.get_config())

  config = _tiny(default.get_config())
  config.mode = 'full'
  config.grad_accum_steps = 2
  config.augment.crop_padding = 2
  config.augment.flip = True
  config.augment.mixup_alpha = 0.2
  config.augment.label_smoothing = 0.1
  runs['convmixer_full_augmented_accumulated'] = config

  config = _tiny(default.get_config())
  config.mode = 'space'
  config.model.name = 'sep_resnet_cifar'
  # A ResNet reads no width: the schema's default, which it ignores (the record predates the
  # check that rejects a width set for it; the run is the same).
  config.model.width = config_schema.get_config().model.width
  config.model.depth = 8
  config.model.depth_multiplier = 9
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.05
  config.optimizer.weight_decay = 5e-4
  runs['sep_resnet_space_sgd'] = config

  config = _tiny(unshuffle_digits.get_config())
  config.mode = 'chans'
  config.model.kernel_size = 3
  runs['unshuffle_chans'] = config

  config = _tiny(default.get_config())
  config.mode = 'full'
  config.adversarial_training.enabled = True
  config.adversarial_training.epsilon = 4.0
  config.eval.attacks = 'fgsm,pgd'
  config.eval.epsilons = '0,4'
  # Spelled out, so that a change of the PGD defaults does not change this record.
  config.eval.pgd_steps = 2
  config.eval.pgd_step_size = 5.0
  config.eval.pgd_variant = 'madry'
  runs['convmixer_adversarial_attacked'] = config
  return runs


def run(name, config, workdir):
  """The recorded metrics of one run trained (and, when attacked, evaluated) in `workdir`."""
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.jobs import train  # pylint: disable=g-import-not-at-top
  del name
  results = train.train_and_evaluate(config, workdir)
  record = {k: results[k] for k in METRICS if k in results}
  if config.eval.attacks:
    record['robustness'] = evaluation.evaluate(config, workdir)['robustness']
  return record


def machine():
  import jax  # pylint: disable=g-import-not-at-top
  flags = ''
  try:
    with open('/proc/cpuinfo') as f:
      flags = next((line.split(':', 1)[1].strip() for line in f if line.startswith('flags')), '')
  except OSError:
    pass
  vector = sorted(f for f in flags.split() if f.startswith(('avx', 'fma', 'amx', 'sse4')))
  return {'jax': jax.__version__, 'machine': platform.machine(), 'vector_isa': vector}


def main():
  records = {}
  for name, config in configs().items():
    with tempfile.TemporaryDirectory() as workdir:
      records[name] = run(name, config, workdir)
  with open(RECORD, 'w') as f:
    json.dump({'machine': machine(), 'runs': records}, f, indent=1, sort_keys=True)
  print(f'Recorded {sorted(records)} in {RECORD}')


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  main()
