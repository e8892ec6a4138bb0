"""Train-step throughput of the paper's CIFAR models: JAX (each depthwise impl) vs PyTorch.

  python benchmarks/throughput.py [--quick] [--batch 64] [--threads 2] --out FILE.json

One row per (model, mode, framework/impl): images/s and step time (median over timed steps
after warm-up) of the project's real train step (`train_step.compile_train_step`: AdamW, frozen
collections never differentiated), on one fixed random batch already on the device, so no
input pipeline is included. PyTorch rows (`benchmarks/torch_models.py`, channels_last,
AdamW, frozen parts requires_grad=False) run in the same process on the same cores.

Columns: `x torch` = JAX img/s / PyTorch img/s for the same model and mode; `t/full` and
`F/full` = step time and XLA FLOPs relative to the same model and impl in `full` mode;
`GF xla` = FLOPs per step from XLA's cost analysis of the compiled step; `GF an` = the
analytic conv/dense count (`analytic_flops`); `GF/s` = analytic FLOPs / step time;
`%peak` = that over a large fp32 (or --dtype) matmul timed on this machine; `MFU` = that
over --peak-tflops when given (GPU/TPU).

The analytic count is `flop_model.py`'s: conv and dense layers only, forward, input and weight
gradients as each layer needs them.

--threads N pins the process (JAX's XLA:CPU pool sizes itself from the affinity mask) and
sets torch.set_num_threads(N). Timings are only meaningful on an otherwise idle machine:
the load average at start and end is in the JSON header.
"""

import argparse
import json
import math
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from spatialmix_jax.infra import host_memory

if __name__ == '__main__':  # as main.py does: before any import starts a thread
  host_memory.retain_freed_memory()
from benchmarks import harness
from benchmarks import flop_model
import jax
import jax.numpy as jnp

from spatialmix_jax.data import datasets
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.kernels import native
from spatialmix_jax.modeling import freezing
# pylint: enable=g-import-not-at-top,wrong-import-position

# The default rows (any name of harness.MODELS can be asked for with --models).
DEFAULT_MODELS = ('convmixer_128_4_k8_p1', 'convmixer_256_8_k5_p2', 'sep_resnet20_d9')
QUICK = dict(models=('convmixer_128_4_k8_p1', 'sep_resnet20_d9'), modes=('full', 'chans'),
             impls=('auto',), batch=16, steps=3, warmup=1, matmul=1024)


# ---------------------------------------------------------------------------------------
# Command line.

def _csv(text):
  return tuple(t.strip() for t in text.split(',') if t.strip())


def _check_choices(label, values, choices):
  bad = [v for v in values if v not in choices]
  if bad or not values:
    raise ValueError(f'Unknown {label} {bad or values!r}; choose from {tuple(choices)}.')


def _peaks(text, dtypes):
  """'989' (every dtype) or 'bfloat16=989,float32=67' -> {dtype: TFLOP/s}."""
  if not text:
    return {}
  try:
    if '=' not in text:
      return {d: float(text) for d in dtypes}
    peaks = {k.strip(): float(v) for k, v in (p.split('=') for p in _csv(text))}
  except ValueError:
    raise ValueError(f'--peak-tflops {text!r}: give a number or dtype=number pairs, e.g. '
                     'bfloat16=989,float32=67.') from None
  _check_choices('--peak-tflops dtype', tuple(peaks), harness.DTYPES)
  return peaks


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', required=True, help='JSON file to write')
  parser.add_argument('--quick', action='store_true',
                      help=f'smoke run: {QUICK} unless given explicitly')
  parser.add_argument('--models', help=f'comma-separated from {tuple(harness.MODELS)}; '
                      f'default {DEFAULT_MODELS}')
  parser.add_argument('--modes', help=f'comma-separated; default {freezing.MODES}')
  parser.add_argument('--impls', help="comma-separated depthwise impls and 'auto'; default "
                      'auto and every impl available on this backend')
  parser.add_argument('--batch', type=int, help='global batch size (default 64)')
  parser.add_argument('--steps', type=int, help='timed steps (default 10)')
  parser.add_argument('--warmup', type=int, help='untimed steps after compiling (default 2)')
  parser.add_argument('--threads', type=int, default=2,
                      help='CPU cores for XLA (affinity) and torch.set_num_threads; on a '
                      'GPU host give all its cores')
  parser.add_argument('--dtype', default='float32',
                      help=f'comma-separated compute dtypes from {harness.DTYPES}')
  parser.add_argument('--peak-tflops', default='',
                      help='accelerator peak for MFU: N, or dtype=N pairs')
  parser.add_argument('--no-torch', action='store_true', help='skip the PyTorch rows')
  parser.add_argument('--matmul-size', type=int, help='n of the peak matmul (default 2048; '
                      '8192 on GPU)')
  parser.add_argument('--device-note', default='', help='free text for the JSON header')
  parser.add_argument('--include', action='append', default=[],
                      help="another benchmark's JSON (e.g. the input pipeline's) to carry "
                      'into this file under "included"; repeatable')
  args = parser.parse_args(argv)

  quick = QUICK if args.quick else {}
  args.models = _csv(args.models) if args.models else quick.get('models', DEFAULT_MODELS)
  args.modes = _csv(args.modes) if args.modes else quick.get('modes', freezing.MODES)
  args.impls = _csv(args.impls) if args.impls else quick.get('impls')
  for name, default in (('batch', 64), ('steps', 10), ('warmup', 2)):
    if getattr(args, name) is None:
      setattr(args, name, quick.get(name, default))
  args.dtype = _csv(args.dtype)
  _check_choices('--models', args.models, harness.MODELS)
  _check_choices('--modes', args.modes, freezing.MODES)
  if args.impls is not None:
    _check_choices('--impls', args.impls, ('auto',) + depthwise.IMPLS)
  _check_choices('--dtype', args.dtype, harness.DTYPES)
  args.peaks = _peaks(args.peak_tflops, args.dtype)
  if args.batch < 1 or args.steps < 1 or args.warmup < 0 or args.threads < 1:
    raise ValueError('--batch, --steps and --threads must be >= 1 and --warmup >= 0.')
  available = len(os.sched_getaffinity(0))
  if args.threads > available:
    raise ValueError(f'--threads {args.threads} exceeds the {available} usable cores.')
  args.included = {}
  for path in args.include:
    try:
      with open(path) as f:
        args.included[path] = json.load(f)
    except (OSError, ValueError) as e:
      raise ValueError(f'--include {path!r} is not a readable JSON file: {e}') from None
  return args


def _available_impls(backend, requested):
  """The impls to time; the default list drops 'native' where it cannot run and 'pallas'
  on CPU, where it only runs interpreted (a test path)."""
  native_ok = backend == 'cpu' and native.available()
  if requested is None:
    return ('auto',) + tuple(i for i in depthwise.IMPLS if (i != 'native' or native_ok)
                             and (i != 'pallas' or backend != 'cpu'))
  if 'native' in requested and not native_ok:
    try:
      depthwise.resolve_impl('native', backend=backend)
      reason = f'backend {backend!r}'
    except (RuntimeError, ValueError) as e:
      reason = str(e)
    raise ValueError(f'--impls native cannot run here ({reason}); drop it from --impls.')
  return requested


def _header(args, backend, torch, torch_device, peak_gflops, impls):
  devices = jax.devices()
  return {
      'device_note': args.device_note,
      'cpu_model': harness.cpu_model(),
      'cpu_count': os.cpu_count(),
      'threads': args.threads,
      'jax_backend': backend,
      'jax_devices': f'{len(devices)} x {devices[0].device_kind}',
      'jax': jax.__version__,
      'torch': torch.__version__ if torch else None,
      'torch_device': str(torch_device) if torch else None,
      'torch_threads': torch.get_num_threads() if torch else None,
      'python': platform.python_version(),
      'batch': args.batch, 'steps': args.steps, 'warmup': args.warmup, 'quick': args.quick,
      'impls': list(impls),
      'optimizer': dict(name='adamw', schedule='constant', **harness.OPTIMIZER),
      'matmul_size': args.matmul_size,
      'matmul_peak_gflops': peak_gflops,
      'peak_tflops': args.peaks,
      'load_avg_start': os.getloadavg(),
  }


_COLUMNS = (('model', 22, 's'), ('mode', 5, 's'), ('impl', 9, 's'), ('dtype', 8, 's'),
            ('batch', 5, 'd'), ('img_per_s', 9, '.1f'), ('step_ms', 9, '.1f'),
            ('ratio_vs_torch', 7, '.2f'), ('time_vs_full', 6, '.2f'),
            ('gflops_xla', 8, '.2f'), ('gflops_analytic', 8, '.2f'),
            ('flops_vs_full', 6, '.2f'), ('gflops_per_s', 7, '.1f'),
            ('pct_matmul_peak', 6, '.1f'), ('mfu', 6, '.3f'))
_TITLES = {'img_per_s': 'img/s', 'step_ms': 'step ms', 'ratio_vs_torch': 'x torch',
           'time_vs_full': 't/full', 'gflops_xla': 'GF xla', 'gflops_analytic': 'GF an',
           'flops_vs_full': 'F/full', 'gflops_per_s': 'GF/s', 'pct_matmul_peak': '%peak'}


def main(argv=None):
  args = parse_args(argv)
  memory = host_memory.retain_freed_memory()  # what the program start did (or does now)
  cores = harness.pin_threads(args.threads)
  backend = jax.default_backend()
  impls = _available_impls(backend, args.impls)
  if args.batch % jax.device_count():
    raise ValueError(f'--batch {args.batch} is not divisible by the {jax.device_count()} '
                     'devices; pick a multiple.')
  torch = torch_device = None
  if not args.no_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top,redefined-outer-name
    except ImportError:
      print('torch not importable (pip install -e ".[torch]"): no PyTorch rows.')
    else:
      torch.set_num_threads(args.threads)
      on_gpu = backend in ('gpu', 'cuda', 'rocm')
      if on_gpu and not torch.cuda.is_available():
        print('JAX is on GPU but this torch has no CUDA: no PyTorch rows.')
        torch = None
      else:
        torch_device = torch.device('cuda' if on_gpu else 'cpu')

  args.matmul_size = args.matmul_size or (QUICK['matmul'] if args.quick else
                                          2048 if backend == 'cpu' else 8192)
  peak_gflops = {d: harness.matmul_gflops(args.matmul_size, jnp.dtype(d), 3 if args.quick else 10)
                 for d in args.dtype}
  header = _header(args, backend, torch, torch_device, peak_gflops, impls)
  header['host_memory'] = memory
  load = header['load_avg_start'][0]
  print(f'{header["cpu_model"]}, {args.threads} threads, JAX {backend} '
        f'({header["jax_devices"]}), torch {header["torch"]} on {header["torch_device"]}; '
        f'matmul peak {", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in peak_gflops.items())}; '
        f'load average {load:.2f}' +
        (' -- MACHINE BUSY: timings not meaningful' if load > 0.5 * cores else ''))
  print(harness.format_row({}, _COLUMNS, _TITLES), flush=True)

  records = []
  for dtype in args.dtype:
    for model in args.models:
      for mode in args.modes:
        config = harness.make_config(model, mode, impls[0], args.batch, dtype)
        spec = datasets.get_spec(config.dataset)
        batch_np = harness.random_batch(spec, args.batch)
        experiment = harness.build_experiment(config)
        layers = flop_model.layers_of(config.model, experiment.image_shape, spec.num_classes,
                                      args.batch)
        analytic = flop_model.analytic_flops(layers, experiment.frozen)
        shapes = flop_model.depthwise_shapes(config.model, experiment.image_shape, args.batch)
        auto = sorted({depthwise.resolve_impl('auto', x, k, backend) for x, k in shapes}
                      ) if 'auto' in impls else []
        runs = ([('torch', 'torch')] if torch else []) + [('jax', i) for i in impls]
        torch_ips = None
        for framework, impl in runs:
          if framework == 'torch':
            result = harness.time_torch(torch, config, batch_np, args.steps, args.warmup,
                                        torch_device)
          else:
            try:
              result = harness.time_jax(
                  harness.make_config(model, mode, impl, args.batch, dtype), batch_np,
                  args.steps, args.warmup)
            except ValueError as e:
              if impl != 'pallas':
                raise
              # Stride 1 only: the separable ResNet's downsampling blocks cannot use it.
              print(f'{model} {mode} pallas skipped: {e}', flush=True)
              continue
          step_s = result['step_ms'] * 1e-3
          record = {
              'model': model, 'mode': mode, 'impl': impl, 'framework': framework,
              'resolved_impl': ','.join(auto) if impl == 'auto' else impl,
              'dtype': dtype, 'batch': args.batch, 'threads': args.threads,
              'frozen': list(experiment.frozen),
              'img_per_s': args.batch / step_s, **result,
              'analytic_flops': analytic,
              'gflops_xla': result['flops'] / 1e9 if result['flops'] else None,
              'gflops_analytic': analytic / 1e9,
              'gflops_per_s': analytic / step_s / 1e9,
          }
          record['pct_matmul_peak'] = 100 * record['gflops_per_s'] / peak_gflops[dtype]
          record['mfu'] = (record['gflops_per_s'] / (args.peaks[dtype] * 1e3)
                           if dtype in args.peaks else None)
          if framework == 'torch':
            torch_ips = record['img_per_s']
          record['ratio_vs_torch'] = harness.ratio(record['img_per_s'], torch_ips)
          full = next((r for r in records if r['mode'] == 'full' and all(
              r[k] == record[k] for k in ('model', 'impl', 'framework', 'dtype'))), None)
          record['time_vs_full'] = harness.ratio(record['step_ms'], full and full['step_ms'])
          record['flops_vs_full'] = harness.ratio(record['flops'], full and full['flops'])
          record['analytic_vs_full'] = harness.ratio(analytic, full and full['analytic_flops'])
          records.append(record)
          print(harness.format_row(record, _COLUMNS), flush=True)

  header['load_avg_end'] = os.getloadavg()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'meta': header, 'records': records, 'included': args.included}, f,
              indent=1)
  print(f'load average at end {header["load_avg_end"][0]:.2f}; wrote {len(records)} rows '
        f'to {args.out}')
  if any(not math.isfinite(r['loss']) for r in records):
    print('WARNING: a non-finite loss; see the "loss" fields.')


if __name__ == '__main__':
  main()
