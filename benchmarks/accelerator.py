"""One-command train-step benchmark on one GPU or TPU: JAX (each depthwise impl) vs timm.

  python benchmarks/accelerator.py --out benchmarks/results/accelerator_h200.json
  python benchmarks/accelerator.py --quick --out /tmp/accelerator_quick.json   # CPU smoke run

Rows, mode by mode (full, chans, space), model by model (ConvMixer-768/32, where JAX >= 1.0x
timm's img/s is the target, and ConvMixer-1536/20, both at 224x224 with batch 64, the
ConvMixer recipe's per-GPU batch; then the paper's CIFAR ConvMixer 128/8 k8 p1 at 32x32 with
its recipe's batch 512): timm's same model in PyTorch (channels_last, then NCHW; a child
process, see torch_peers.py), then the project's real train step
(`train_step.compile_train_step` on an `experiment.create_experiment` Experiment) with each
depthwise impl ('auto', 'xla', 'pallas' on GPU/TPU; 'auto', 'xla', 'shift' on CPU). Everything
is bfloat16: JAX computes in bf16 with float32 variables, PyTorch runs bf16 autocast (AMP).
Both run AdamW (`harness.OPTIMIZER`) on one fixed random batch already on the device. 'auto'
shares the timing of the impl it resolves to when that impl is timed too (same program).

Columns (benchmarks/README.md has the details): img/s and step ms (median of --steps steps,
each blocked on, after --warmup); compile (JAX: lower + compile s; timm: its first step); TF/s
(analytic FLOPs, flop_model.py, per second); mfu (TF/s over the bf16 matmul peak measured at
start); mem GiB (JAX: XLA's buffer assignment of the step; timm: max_memory_allocated); x timm
(JAX img/s over the faster timm layout's, same model and mode).

--time-budget-s (from process start) skips, and records as skipped, rows whose estimate no
longer fits; a row that fails (out of memory, a Pallas lowering error) is recorded with its
error. The JSON is rewritten after every row. Imports no TensorFlow, TFDS or CLU.
"""

import argparse
import gc
import os
import sys
import time

_START = time.perf_counter()  # the time budget counts imports and the matmul peak too
# JAX would otherwise reserve 75 % of the GPU up front, leaving the PyTorch peers too little;
# growing on demand still lets each framework use what the other has not taken.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
try:
  from benchmarks import harness
except ModuleNotFoundError as e:
  if __name__ == '__main__' and e.name in ('ml_collections', 'absl', 'yaml'):
    print(f'error: {e.name} is not importable; install the carried wheels first (see '
          'benchmarks/README.md, "Accelerator benchmark").', file=sys.stderr)
    sys.exit(2)
  raise
from benchmarks import accelerator_report as report
from benchmarks import flop_model
from benchmarks import torch_peers
import jax
import jax.numpy as jnp

from configs import convmixer_cifar10
from configs import convmixer_imagenet
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.modeling import freezing
from spatialmix_jax.kernels import native
# pylint: enable=g-import-not-at-top,wrong-import-position

DTYPE = 'bfloat16'
# name: (the recipe's config, timm's registered name, default batch); run in this order.
MODELS = {
    'convmixer_768_32': (lambda: convmixer_imagenet.get_config('768_32'), 'convmixer_768_32', 64),
    'convmixer_1536_20': (lambda: convmixer_imagenet.get_config('1536_20'), 'convmixer_1536_20',
                          64),
    'convmixer_128_8_k8_p1': (convmixer_cifar10.get_config, None, 512),
}
# --quick: every model shrunk to width 32, depth 2 on 32x32 images (the ImageNet ones keep
# patch 7: a 4x4 grid), batch 4: the CPU smoke run of every code path.
QUICK = dict(width=32, depth=2, image_size=32, batch=4, steps=2, warmup=1, matmul=256)
ACCELERATOR_IMPLS = ('auto', 'xla', 'pallas')
CPU_IMPLS = ('auto', 'xla', 'shift')


class UsageError(ValueError):
  """A command-line mistake; reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    raise UsageError(message)


def _csv(text, label, choices):
  values = tuple(t.strip() for t in text.split(',') if t.strip())
  bad = [v for v in values if v not in choices]
  if bad or not values:
    raise UsageError(f'Unknown {label} {bad or text!r}; choose from {tuple(choices)}.')
  return values


def _check_writable(path):
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if os.path.isdir(path) or not os.access(parent, os.W_OK | os.X_OK):
    raise UsageError(f'--out {path!r} cannot be written (no write access to {parent!r}).')


def parse_args(argv=None):
  """Every flag checked, and the backend's impls resolved, before anything is computed."""
  parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', required=True, help='JSON file to write (rewritten per row)')
  parser.add_argument('--quick', action='store_true', help=f'tiny smoke run: {QUICK}')
  parser.add_argument('--models', default=','.join(MODELS), help='comma-separated, in order')
  parser.add_argument('--modes', default=','.join(freezing.MODES))
  parser.add_argument('--impls', help="depthwise impls; default 'auto,xla,pallas' on GPU/TPU, "
                      "'auto,xla,shift' on CPU")
  parser.add_argument('--torch-layouts', default=','.join(torch_peers.LAYOUTS))
  parser.add_argument('--no-torch', action='store_true', help='skip the timm rows')
  parser.add_argument('--batch', type=int, help='batch of every model (default 64 at 224x224, '
                      '512 for the CIFAR model)')
  parser.add_argument('--steps', type=int, help='timed steps per row (default 10)')
  parser.add_argument('--warmup', type=int, help='untimed steps after compiling (default 3)')
  parser.add_argument('--time-budget-s', type=float, default=280.0,
                      help='wall-clock budget from process start; rows that would not fit are '
                      'recorded as skipped')
  parser.add_argument('--matmul-size', type=int, help='n of the bf16 peak matmul (default '
                      '8192 on GPU/TPU, 2048 on CPU)')
  parser.add_argument('--allow-cpu', action='store_true',
                      help='run the full-size rows even though JAX sees no GPU or TPU')
  parser.add_argument('--device-note', default='', help='free text for the JSON header')
  args = parser.parse_args(argv)
  quick = QUICK if args.quick else {}
  args.models = _csv(args.models, '--models', MODELS)
  args.modes = _csv(args.modes, '--modes', freezing.MODES)
  args.torch_layouts = _csv(args.torch_layouts, '--torch-layouts', torch_peers.LAYOUTS)
  args.steps = args.steps if args.steps is not None else quick.get('steps', 10)
  args.warmup = args.warmup if args.warmup is not None else quick.get('warmup', 3)
  if args.batch is None and args.quick:
    args.batch = QUICK['batch']
  if (args.batch is not None and args.batch < 1) or args.steps < 1 or args.warmup < 0:
    raise UsageError('--batch and --steps must be >= 1 and --warmup >= 0.')
  if not args.time_budget_s > 0:
    raise UsageError(f'--time-budget-s must be > 0, got {args.time_budget_s}.')
  if args.matmul_size is not None and args.matmul_size < 16:
    raise UsageError(f'--matmul-size must be >= 16, got {args.matmul_size}.')
  _check_writable(args.out)
  args.backend = jax.default_backend()
  if args.backend == 'cpu' and not (args.quick or args.allow_cpu):
    raise UsageError("JAX sees no GPU or TPU (backend 'cpu'; a CUDA jaxlib that failed to "
                     'start says why above): --quick is the CPU smoke run, and --allow-cpu '
                     'forces the full-size rows here.')
  default_impls = CPU_IMPLS if args.backend == 'cpu' else ACCELERATOR_IMPLS
  args.impls = (_csv(args.impls, '--impls', ('auto',) + depthwise.IMPLS) if args.impls
                else default_impls)
  if 'native' in args.impls and not (args.backend == 'cpu' and native.available()):
    raise UsageError(f"--impls native cannot run on backend {args.backend!r}; drop it.")
  batches = [args.batch or MODELS[m][2] for m in args.models]
  uneven = [b for b in batches if b % jax.device_count()]
  if uneven:
    raise UsageError(f'batch {uneven[0]} does not divide over the {jax.device_count()} '
                     'devices; pass --batch with a multiple.')
  args.matmul_size = args.matmul_size or (QUICK['matmul'] if args.quick else
                                          2048 if args.backend == 'cpu' else 8192)
  return args


def model_config(name, mode, impl, args):
  recipe, _, default_batch = MODELS[name]
  config = recipe()
  if args.quick:
    config.model.width, config.model.depth = QUICK['width'], QUICK['depth']
    if config.augment.image_size:
      config.augment.image_size = QUICK['image_size']
  return harness.benchmark_settings(config, mode, impl, args.batch or default_batch, DTYPE)


def _device_peak_bytes():
  """The process's high-water mark of device memory (GPU/TPU), None where not reported."""
  try:
    stats = jax.devices()[0].memory_stats()
  except (NotImplementedError, RuntimeError):
    return None
  return (stats or {}).get('peak_bytes_in_use')


def _jax_rows(run, args, name, mode, base, batch_np, experiment, peak_tflops):
  """Times each distinct program among the requested impls once ('auto' shares the timing of
  the impl it resolves to when that is also requested) and adds one row per impl."""
  resolved = sorted({depthwise.resolve_impl('auto', x, k, args.backend) for x, k in
                     flop_model.depthwise_shapes(experiment.config.model,
                                                 experiment.image_shape, base['batch'])})
  groups = {}
  for impl in args.impls:
    shared = impl == 'auto' and len(resolved) == 1 and resolved[0] in args.impls
    groups.setdefault(resolved[0] if shared else impl, []).append(impl)
  initial = None  # (optimizer, initial state): made by the first row that runs, then shared
  for program, impls in groups.items():
    rows = [{**base, 'framework': 'jax', 'impl': impl,
             'resolved_impl': ','.join(resolved) if impl == 'auto' else impl,
             'timing_shared_with': program if impl != program else None} for impl in impls]
    reason = run.skip_reason(name, 'jax')
    if reason:
      for row in rows:
        run.add({**row, 'status': 'skipped', 'skipped_because': reason})
      continue
    start, peak_before = time.perf_counter(), _device_peak_bytes()
    try:
      initial = initial or harness.initial_state(experiment)
      result = harness.time_jax(model_config(name, mode, program, args), batch_np,
                                args.steps, args.warmup, initial)
      result['memory_bytes'] = result.pop('xla_memory_bytes')
    except Exception as e:  # pylint: disable=broad-except
      # One impl failing (out of memory, a Pallas lowering error) must not end the run.
      result = {'status': 'error', 'error': torch_peers.one_line(e)}
    gc.collect()  # frees the step's device buffers (a failed one's too) before the next row
    peak = _device_peak_bytes()
    # The high-water mark is the process's: it is this row's own peak only if the row raised it.
    result.update(row_s=time.perf_counter() - start, device_peak_bytes_in_use=peak,
                  device_peak_raised=None if peak is None else peak > (peak_before or 0))
    for row in rows:
      row.update(result)
      # The step runs data-parallel over every device JAX sees (one, on the intended machine).
      run.add(row if 'error' in row else report.finish(row, base['analytic_flops'],
                                                        peak_tflops * jax.device_count()))


def _timm_rows(run, args, peers, name, base, experiment, peak_tflops):
  """The timm rows of one model and mode, each timed by the PyTorch child process."""
  mc = experiment.config.model
  arch = dict(width=mc.width, depth=mc.depth, kernel_size=mc.kernel_size,
              patch_size=mc.patch_size, in_chans=experiment.image_shape[-1],
              num_classes=experiment.spec.num_classes)
  for layout in args.torch_layouts:
    row = {**base, 'framework': 'timm', 'impl': layout, 'resolved_impl': layout}
    reason = run.skip_reason(name, 'timm')
    if reason:
      run.add({**row, 'status': 'skipped', 'skipped_because': reason})
      continue
    start = time.perf_counter()
    result = peers.run({
        'arch': arch, 'act': mc.act, 'registered_name': MODELS[name][1], 'layout': layout,
        'frozen': list(experiment.frozen), 'batch': base['batch'],
        'image_shape': list(experiment.image_shape), 'steps': args.steps,
        'warmup': args.warmup, 'optimizer': harness.OPTIMIZER,
    }, timeout_s=max(run.time_left_s(), 60.0) + 60.0)
    row.update(result, row_s=time.perf_counter() - start)
    if row.get('error'):
      run.add({**row, 'status': 'error'})
    else:
      row.pop('error', None)
      run.add(report.finish(row, base['analytic_flops'], peak_tflops))


def _start_peers(args):
  """A started PeerProcess (it imports torch meanwhile), or None and why no timm rows."""
  if args.no_torch:
    return None, '--no-torch'
  # jax.default_backend() says 'gpu' for CUDA and ROCm alike; torch calls both 'cuda'.
  device_type = {'cpu': 'cpu', 'gpu': 'cuda', 'cuda': 'cuda', 'rocm': 'cuda'}.get(args.backend)
  if device_type is None:
    return None, f'no PyTorch device for JAX backend {args.backend!r}'
  return torch_peers.PeerProcess(device_type), None


def _ready_peers(peers, reason):
  if peers and peers.wait_ready().get('error'):
    peers.close()
    return None, peers.info['error']
  return peers, reason


def _meta(args, peers, torch_reason, peak_tflops):
  devices = jax.devices()
  return {
      'device': f'{len(devices)} x {devices[0].device_kind}', 'jax_backend': args.backend,
      'device_note': args.device_note, 'cpu_model': harness.cpu_model(),
      'cpu_count': os.cpu_count(), 'command': sys.argv, 'quick': args.quick,
      'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
      'versions': report.versions(('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'torch', 'timm',
                                   'ml_collections')),
      'torch_process': peers.info if peers else None,
      'torch_rows': f'skipped: {torch_reason}' if torch_reason else 'timm',
      'env': {k: os.environ.get(k) for k in ('XLA_PYTHON_CLIENT_PREALLOCATE', 'XLA_FLAGS',
                                             'XLA_PYTHON_CLIENT_MEM_FRACTION')},
      'settings': {'models': list(args.models), 'modes': list(args.modes),
                   'impls': list(args.impls), 'torch_layouts': list(args.torch_layouts),
                   'batch': args.batch, 'steps': args.steps, 'warmup': args.warmup,
                   'dtype': DTYPE, 'time_budget_s': args.time_budget_s,
                   'optimizer': dict(name='adamw', schedule='constant', **harness.OPTIMIZER)},
      'matmul_size': args.matmul_size, 'matmul_peak_tflops': {DTYPE: peak_tflops},
      'complete': False,
  }


def _model_mode_rows(run, args, peers, name, mode, peak_tflops):
  config = model_config(name, mode, 'xla', args)
  experiment = harness.build_experiment(config)
  batch = config.batch_size
  base = {'model': name, 'mode': mode, 'dtype': DTYPE, 'batch': batch,
          'image_size': experiment.image_shape[0], 'frozen': list(experiment.frozen),
          'arch': {k: config.model[k] for k in ('width', 'depth', 'kernel_size', 'patch_size',
                                                 'act')},
          'analytic_flops': flop_model.analytic_flops(flop_model.layers_of(
              config.model, experiment.image_shape, experiment.spec.num_classes, batch),
                                                      experiment.frozen)}
  if peers:
    _timm_rows(run, args, peers, name, base, experiment, peak_tflops)
  batch_np = torch_peers.synthetic_batch(batch, experiment.image_shape,
                                         experiment.spec.num_classes)
  _jax_rows(run, args, name, mode, base, batch_np, experiment, peak_tflops)


def main(argv=None):
  try:
    args = parse_args(argv)
  except UsageError as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)
  peers, torch_reason = _start_peers(args)
  try:
    peak_tflops = harness.matmul_gflops(args.matmul_size, jnp.dtype(DTYPE),
                                        5 if args.quick else 20) / 1e3
    peers, torch_reason = _ready_peers(peers, torch_reason)
    run = report.Run(args.out, args.time_budget_s, _START,
                     _meta(args, peers, torch_reason, peak_tflops))
    where = ', no GPU/TPU: CPU smoke run' if args.backend == 'cpu' else ''
    print(f"{run.meta['device']} ({args.backend}{where}), JAX {jax.__version__}; bf16 matmul "
          f'peak {peak_tflops:.2f} TFLOP/s (n={args.matmul_size}); timm rows: '
          f"{run.meta['torch_rows']}; budget {args.time_budget_s:.0f} s", flush=True)
    print(harness.format_row({}, report.COLUMNS, report.TITLES), flush=True)
    # Mode-major: when the budget runs out, what is lost is the last modes, not a whole model.
    for mode in args.modes:
      for name in args.models:
        _model_mode_rows(run, args, peers, name, mode, peak_tflops)
  finally:
    if peers:
      peers.close()
  run.meta['complete'] = True
  run.meta['target_jax_vs_timm'] = run.target_summary(args.modes)
  run.write()
  counts = {s: sum(r['status'] == s for r in run.records) for s in ('ok', 'error', 'skipped')}
  print(f"{counts} rows in {run.elapsed_s():.0f} s; JAX vs timm on {report.TARGET_MODEL} "
        f"(target >= 1.0x): {', '.join(run.meta['target_jax_vs_timm']) or 'not measured'}; "
        f'wrote {args.out}', flush=True)


if __name__ == '__main__':
  main()
