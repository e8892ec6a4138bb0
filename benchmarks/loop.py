"""The whole training loop's throughput: `train.train_and_evaluate` (tf.data, the sharded
step, logging, checkpoints) next to its PyTorch twin trained on in-memory tensors, same
threads, same run.

  python benchmarks/loop.py --out benchmarks/results/loop_cpu.json \
      --data_dir ../shared/tensorflow_datasets [--models ...] [--steps 40] [--window 10] \
      [--reps 3]

For each model and mode, JAX trains `window + steps` steps of the benchmark config
(`harness.make_config`: batch 128, AdamW at a constant rate) with flips only, float32, on
CIFAR-10 from --data_dir, or TFDS mock data through the same pipeline when it is not prepared
there. Its rate is results.json's `train_timing`: the steps after the first logging window
(compilation excluded), with the loop thread's time split into input wait, step compute and
host work (`spatialmix_jax/training/progress.py`). The final evaluation is not timed; it reads only
--eval_examples test images, to keep the benchmark short. The PyTorch twin
(`torch_models.py`) trains the same model on the same training images held in memory as one
tensor (random flips included), `window` untimed steps and then `steps` timed ones; with
--torch-compile, the same twin under `torch.compile` (inductor) too, compiled in its untimed
window (the first rep's compile is kept for the later ones).

Every row runs --reps times, the repetitions interleaved (all rows once, then again), and the
table gives the median img/s with the min and max over them; the load average is recorded
with each run. Columns: `x torch` = median JAX img/s over median PyTorch img/s; `in/cmp/host` = the JAX loop's time shares;
`x comp` = the same over the compiled twin's; `t/full` = step time relative to `full` for the
same model and framework.
"""

import argparse
import functools
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from spatialmix_jax.infra import host_memory

if __name__ == '__main__':  # as main.py does: before any import starts a thread
  host_memory.retain_freed_memory()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
from benchmarks import harness
import jax
import numpy as np

from spatialmix_jax.modeling import freezing
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.data import tfds_builders
from spatialmix_jax.jobs import train
# pylint: enable=g-import-not-at-top,wrong-import-position

BATCH = 128
_COLUMNS = (('model', 22, 's'), ('mode', 5, 's'), ('jax_img_per_s', 8, '.1f'),
            ('jax_min', 7, '.1f'), ('jax_max', 7, '.1f'),
            ('torch_img_per_s', 8, '.1f'), ('torch_min', 7, '.1f'), ('torch_max', 7, '.1f'), ('ratio_vs_torch', 7, '.2f'),
            ('torchc_img_per_s', 8, '.1f'), ('ratio_vs_compiled', 6, '.2f'),
            ('input_pct', 5, '.0f'), ('compute_pct', 5, '.0f'), ('host_pct', 5, '.0f'),
            ('jax_time_vs_full', 6, '.2f'), ('torch_time_vs_full', 6, '.2f'),
            ('torchc_time_vs_full', 6, '.2f'))
_TITLES = {'jax_img_per_s': 'JAX i/s', 'jax_min': 'min', 'jax_max': 'max',
           'torch_min': 'min', 'torch_max': 'max', 'torch_img_per_s': 'torch i/s',
           'ratio_vs_torch': 'x torch', 'torchc_img_per_s': 'comp i/s',
           'ratio_vs_compiled': 'x comp', 'input_pct': 'in%', 'compute_pct': 'cmp%',
           'host_pct': 'host%', 'jax_time_vs_full': 'J t/f', 'torch_time_vs_full': 'T t/f',
           'torchc_time_vs_full': 'C t/f'}


def loop_config(model, mode, data_dir, window, steps):
  config = harness.make_config(model, mode, 'auto', BATCH, 'float32')
  config.dataset = 'cifar10'
  config.data_dir = data_dir
  config.num_train_steps = window + steps
  config.log_every_steps = window
  config.checkpoint_every_steps = 10 ** 6  # only the final save, as in a long run's tail
  for field, value in dict(crop_padding=0, flip=True, randaugment_num_ops=0, mixup_alpha=0.0,
                           cutmix_alpha=0.0, random_erasing=0.0, label_smoothing=0.0).items():
    config.augment[field] = value
  return config


def time_jax_loop(config, eval_examples):
  """results.json's train_timing of a run of `config` in a fresh workdir."""
  original = input_pipeline.create_eval_data
  input_pipeline.create_eval_data = functools.partial(original, max_examples=eval_examples)
  try:
    with tempfile.TemporaryDirectory() as workdir:
      return train.train_and_evaluate(config, workdir)['train_timing']
  finally:
    input_pipeline.create_eval_data = original


def training_images(config, limit):
  """(images uint8 NHWC, labels) of the first `limit` training examples, as the loop reads them."""
  builder = tfds_builders.get_builder(config.dataset, config.data_dir)
  ds = tfds_builders.load_split(builder, 'train', shuffle_files=False).take(limit)
  examples = list(ds.as_numpy_iterator())
  return (np.stack([e['image'] for e in examples]),
          np.array([e['label'] for e in examples], np.int64))


def time_torch_loop(torch, config, images, labels, window, steps, step=None):
  """img/s of the PyTorch twin over `steps` steps after `window`, reading in-memory tensors;
  `step`: a twin's step built earlier (`harness.torch_step`), else a new eager one."""
  if step is None:
    step, _ = harness.torch_step(torch, config, torch.device('cpu'))
  data = torch.from_numpy(images).permute(0, 3, 1, 2)  # uint8 NCHW view
  targets = torch.from_numpy(labels)
  generator = torch.Generator().manual_seed(0)
  order = torch.randperm(len(data), generator=generator)

  def one_step(index):
    rows = order[(index * BATCH) % (len(data) - BATCH):][:BATCH]
    x = data[rows].float().div_(255).contiguous(memory_format=torch.channels_last)
    flip = torch.rand(BATCH, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return step(x, targets[rows])

  for index in range(window):
    one_step(index)
  started = time.perf_counter()
  for index in range(window, window + steps):
    loss = one_step(index)
  loss.item()
  return steps * BATCH / (time.perf_counter() - started)


def summarise(runs, model, mode, records):
  """The row of (model, mode): medians over its repetitions, with their min and max; time
  relative to `full` from the medians of the same model's `full` row in `records`."""
  mine = [r for r in runs if r['model'] == model and r['mode'] == mode]
  record = {'model': model, 'mode': mode, 'reps': len(mine)}
  for framework in ('jax', 'torch', 'torchc'):
    values = [r[f'{framework}_img_per_s'] for r in mine if f'{framework}_img_per_s' in r]
    if values:
      spread = harness.spread(values)
      record[f'{framework}_img_per_s'] = spread['median']
      record[f'{framework}_min'], record[f'{framework}_max'] = spread['min'], spread['max']
  seconds = sum(r['jax']['seconds'] for r in mine)
  for part in ('input', 'compute', 'host'):
    record[f'{part}_pct'] = 100 * sum(r['jax'][f'{part}_seconds'] for r in mine) / seconds
  record['ratio_vs_torch'] = harness.ratio(record['jax_img_per_s'],
                                           record.get('torch_img_per_s'))
  record['ratio_vs_compiled'] = harness.ratio(record['jax_img_per_s'],
                                              record.get('torchc_img_per_s'))
  full = next((r for r in records if r['model'] == model and r['mode'] == 'full'), None)
  for framework in ('jax', 'torch', 'torchc'):
    key = f'{framework}_img_per_s'
    record[f'{framework}_time_vs_full'] = harness.ratio(full and full.get(key),
                                                        record.get(key))
  record['load_avg'] = harness.spread([r['load_avg'] for r in mine])
  return record


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', required=True, help='JSON file to write')
  parser.add_argument('--data_dir', default=None,
                      help='folder with TFDS cifar10 prepared; mock data when it has none')
  parser.add_argument('--models', default=','.join(harness.MODELS),
                      help=f'comma-separated from {tuple(harness.MODELS)} (or '
                      f'{tuple(harness.SMOKE_MODELS)} for a smoke run)')
  parser.add_argument('--modes', default=','.join(freezing.MODES))
  parser.add_argument('--window', type=int, default=10,
                      help='steps of the first (untimed) logging window')
  parser.add_argument('--steps', type=int, default=40, help='timed steps')
  parser.add_argument('--reps', type=int, default=3,
                      help='repetitions of every row, interleaved; the table gives medians')
  parser.add_argument('--eval_examples', type=int, default=256,
                      help='test images of the (untimed) final evaluation')
  parser.add_argument('--threads', type=int, default=2)
  parser.add_argument('--no-torch', action='store_true', help='skip the PyTorch rows')
  parser.add_argument('--torch-compile', action='store_true',
                      help='also time the PyTorch twin under torch.compile')
  args = parser.parse_args(argv)
  args.models = [m for m in args.models.split(',') if m]
  args.modes = [m for m in args.modes.split(',') if m]
  for label, values, choices in (('--models', args.models,
                                  {**harness.MODELS, **harness.SMOKE_MODELS}),
                                 ('--modes', args.modes, freezing.MODES)):
    bad = [v for v in values if v not in choices]
    if bad or not values:
      parser.error(f'{label}: unknown {bad or values}; choose from {tuple(choices)}')
  if args.torch_compile and args.no_torch:
    parser.error('--torch-compile times a PyTorch twin: drop --no-torch')
  if min(args.window, args.steps, args.eval_examples, args.reps) < 1:
    parser.error('--window, --steps, --eval_examples and --reps must be >= 1')
  return args


def _cifar_prepared(data_dir):
  try:
    tfds_builders.load_split(tfds_builders.get_builder('cifar10', data_dir), 'test')
  except ValueError:
    return False
  return True


def main(argv=None):
  args = parse_args(argv)
  memory = host_memory.retain_freed_memory()  # what the program start did (or does now)
  cores = harness.pin_threads(args.threads)
  torch = None
  if not args.no_torch:
    import torch  # pylint: disable=g-import-not-at-top,redefined-outer-name
    torch.set_num_threads(args.threads)
  real = args.data_dir is not None and _cifar_prepared(args.data_dir)
  meta = {'cpu_model': harness.cpu_model(), 'cpu_count': cores, 'threads': args.threads,
          'jax': jax.__version__, 'torch': torch.__version__ if torch else None,
          'data': f'CIFAR-10 from {args.data_dir}' if real else 'TFDS mock CIFAR-10',
          'torch_compile': args.torch_compile, 'batch': BATCH, 'window': args.window, 'steps': args.steps, 'reps': args.reps,
          'host_memory': memory, 'load_avg_start': os.getloadavg()}
  print(f'{meta["cpu_model"]}, {args.threads} threads, {meta["data"]}; load average '
        f'{meta["load_avg_start"][0]:.2f}' +
        (' -- MACHINE BUSY: timings not meaningful' if meta['load_avg_start'][0] > 0.5 * cores
         else ''))
  print(harness.format_row({}, _COLUMNS, _TITLES), flush=True)
  mock = None
  if not real:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    mock = tfds.testing.mock_data(num_examples=BATCH * (args.window + args.steps + 2))
    mock.__enter__()
  runs = []
  images = labels = None
  compiled_steps = {}  # (model, mode) -> the compiled twin's step, compiled once
  # Repetitions interleave every row, so a slow minute of the machine hits all of them.
  for rep in range(args.reps):
    for model in args.models:
      for mode in args.modes:
        config = loop_config(model, mode, args.data_dir if real else None, args.window,
                             args.steps)
        timing = time_jax_loop(config, args.eval_examples)
        run = {'rep': rep, 'model': model, 'mode': mode, 'jax': timing,
               'jax_img_per_s': timing['images_per_sec'], 'load_avg': os.getloadavg()[0]}
        if torch is not None:
          if images is None:
            images, labels = training_images(config, BATCH * (args.window + args.steps + 1))
          run['torch_img_per_s'] = time_torch_loop(torch, config, images, labels,
                                                   args.window, args.steps)
          if args.torch_compile:
            if (model, mode) not in compiled_steps:
              compiled_steps[model, mode] = harness.torch_step(
                  torch, config, torch.device('cpu'), compiled=True)[0]
            run['torchc_img_per_s'] = time_torch_loop(
                torch, config, images, labels, args.window, args.steps,
                step=compiled_steps[model, mode])
        runs.append(run)
        print(f'rep {rep}: ' + harness.format_row(summarise([run], model, mode, []), _COLUMNS),
              flush=True)
  records = []
  for model in args.models:
    for mode in args.modes:
      records.append(summarise(runs, model, mode, records))
  print(harness.format_row({}, _COLUMNS, _TITLES))
  for record in records:
    print(harness.format_row(record, _COLUMNS), flush=True)
  if mock is not None:
    mock.__exit__(None, None, None)
  meta['load_avg_end'] = os.getloadavg()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'meta': meta, 'records': records, 'runs': runs}, f, indent=1)
  print(f'load average at end {meta["load_avg_end"][0]:.2f}; wrote {len(records)} rows to '
        f'{args.out}')


if __name__ == '__main__':
  main()
