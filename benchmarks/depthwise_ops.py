"""Times every depthwise implementation (and PyTorch, if importable) on the project's shapes.

  python benchmarks/depthwise_ops.py [--quick] [--threads 2] --out FILE.json [--update-auto-table]
  python benchmarks/depthwise_ops.py --auto-table-from FILE.json

Columns: forward; forward + both gradients (training a learned spatial mixer); forward +
input gradient only (a spatial mixer frozen at init, as in the paper's frozen-spatial runs).
Milliseconds, median over repetitions after a warm-up call.

`--update-auto-table` then writes this backend's fwd+bwd numbers into the table that
depthwise impl 'auto' reads (spatialmix_jax/kernels/depthwise_auto.json, package data);
`--auto-table-from` does the same from an earlier results file without timing anything.
Each shape class's number is the sum over the benchmark shapes in that class.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, ROOT)
from spatialmix_jax.kernels import depthwise  # pylint: disable=g-import-not-at-top

# name: (batch, height, width, channels, k, depth multiplier, stride)
SHAPES = {
    'S1': (128, 16, 16, 128, 5, 1, 1),  # ConvMixer-128, patch 2, CIFAR
    'S2': (64, 32, 32, 128, 8, 1, 1),  # the paper's CIFAR ConvMixer, patch 1
    'R1': (128, 32, 32, 16, 3, 9, 1),  # separable ResNet, first stage
    'R2': (128, 32, 32, 32, 3, 9, 2),  # separable ResNet, downsampling block
}


def _conv_shapes(shape):
  """(x shape, kernel shape, stride) of a SHAPES entry."""
  n, h, w, c, k, d, s = shape
  return (n, h, w, c), (k, k, 1, c * d), s


def _default_impls(backend):
  # 'native' is CPU only; 'pallas' runs interpreted on CPU, a test path, not a contender.
  skip = 'pallas' if backend == 'cpu' else 'native'
  return tuple(i for i in depthwise.IMPLS if i != skip) + ('torch',)


def _cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      return next((line.split(':', 1)[1].strip() for line in f
                   if line.startswith('model name')), None)
  except OSError:
    return None


def _median_ms(fn, reps):
  fn()  # warm-up (compilation, allocator)
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append((time.perf_counter() - start) * 1e3)
  return statistics.median(times)


def _jax_rows(shape, impl, reps):
  n, h, w, c, k, d, s = shape
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((n, h, w, c), np.float32))
  kernel = jnp.asarray(rng.standard_normal((k, k, 1, c * d), np.float32))
  g = jnp.asarray(rng.standard_normal((n, -(-h // s), -(-w // s), c * d), np.float32))

  def conv(a, b):
    return depthwise.depthwise_conv(a, b, stride=s, impl=impl)

  def fwd_bwd(f, *primals):
    # The output is returned too: otherwise XLA drops the forward and times only the VJP.
    def run(t):
      y, vjp = jax.vjp(f, *primals)
      return y, vjp(t)
    return run

  fwd = jax.jit(conv)
  both = jax.jit(lambda a, b, t: fwd_bwd(conv, a, b)(t))
  only_x = jax.jit(lambda a, b, t: fwd_bwd(lambda u: conv(u, b), a)(t))
  return {
      'fwd_ms': _median_ms(lambda: fwd(x, kernel).block_until_ready(), reps),
      'fwd_bwd_ms': _median_ms(
          lambda: jax.block_until_ready(both(x, kernel, g)), reps),
      'fwd_bwd_x_ms': _median_ms(
          lambda: jax.block_until_ready(only_x(x, kernel, g)), reps),
  }


def _torch_rows(torch, shape, reps):
  n, h, w, c, k, d, s = shape
  f = torch.nn.functional
  conv = torch.nn.Conv2d(c, c * d, k, stride=s, groups=c, bias=False)
  conv = conv.to(memory_format=torch.channels_last)
  out_h, out_w = -(-h // s), -(-w // s)
  # Same asymmetric 'SAME' padding as lax (extra row/column at the end).
  pad_h = max((out_h - 1) * s + k - h, 0)
  pad_w = max((out_w - 1) * s + k - w, 0)
  pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
  symmetric = pads[0] == pads[1] and pads[2] == pads[3]
  if symmetric:
    conv.padding = (pads[2], pads[0])

  def run(x):
    return conv(x) if symmetric else conv(f.pad(x, pads))

  x = torch.randn(n, c, h, w).to(memory_format=torch.channels_last)
  g = torch.randn(n, c * d, out_h, out_w).to(memory_format=torch.channels_last)

  def fwd():
    with torch.no_grad():
      run(x)

  def both():
    xr = x.detach().requires_grad_(True)
    conv.weight.grad = None
    run(xr).backward(g)

  def only_x():
    conv.weight.requires_grad_(False)
    xr = x.detach().requires_grad_(True)
    run(xr).backward(g)
    conv.weight.requires_grad_(True)

  return {'fwd_ms': _median_ms(fwd, reps), 'fwd_bwd_ms': _median_ms(both, reps),
          'fwd_bwd_x_ms': _median_ms(only_x, reps)}


def _commit_date(path):
  """Date of the last commit touching `path`, or None outside a git checkout."""
  try:
    out = subprocess.run(['git', 'log', '-1', '--format=%cs', '--', os.path.abspath(path)],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=30)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def auto_table_entry(results, source):
  """One backend's entry of the 'auto' table, from a results dict read from `source`."""
  meta = results['meta']
  if meta.get('quick'):
    raise ValueError(f'{source} is a --quick smoke run; the auto table needs a full run.')
  shapes = collections.defaultdict(set)  # class -> benchmark shape names
  times = collections.defaultdict(lambda: collections.defaultdict(dict))  # class, impl
  for r in results['records']:
    if r['impl'] not in depthwise.IMPLS or r.get('dtype', 'float32') != 'float32':
      continue
    dims = r['dims']
    x_shape, kernel_shape, _ = _conv_shapes(tuple(dims[k] for k in (
        'batch', 'height', 'width', 'channels', 'k', 'depth_multiplier', 'stride')))
    name = depthwise.shape_class(x_shape, kernel_shape)
    shapes[name].add(r['shape'])
    times[name][r['impl']][r['shape']] = r['fwd_bwd_ms']
  classes = {}
  for name in sorted(shapes):
    # An impl enters a class only if it was timed on every shape of it (pallas skips the
    # strided ones): a partial sum would look faster than it is.
    classes[name] = {'shapes': sorted(shapes[name]), 'fwd_bwd_ms': {
        impl: round(sum(per_shape.values()), 1) for impl, per_shape in times[name].items()
        if set(per_shape) == shapes[name]}}
  date = meta.get('date')
  provenance = {
      'source': os.path.relpath(os.path.abspath(source), ROOT),
      'date': date or _commit_date(source),
      'date_is': 'of the run' if date else 'of the last commit of the source file',
      'reps': max(r['reps'] for r in results['records']),
      **{k: meta[k] for k in ('backend', 'device_kind', 'cpu_model', 'machine', 'cpu_count',
                              'jax', 'load_average_before_after') if meta.get(k) is not None},
  }
  return {'provenance': provenance, 'shape_classes': classes}


def update_auto_table(results_path, table_path=None):
  """Replaces the results' backend entry of the auto table; returns the new table."""
  table_path = table_path or os.path.join(ROOT, 'spatialmix_jax', 'kernels', 'depthwise_auto.json')
  with open(results_path) as f:
    results = json.load(f)
  try:
    with open(table_path) as f:
      backends = json.load(f)['backends']
  except FileNotFoundError:
    backends = {}
  backends[results['meta']['backend']] = auto_table_entry(results, results_path)
  table = {'about': (
      "fwd+bwd milliseconds (float32) of each depthwise impl, per JAX backend and shape "
      "class (depthwise.shape_class), summed over the benchmark shapes listed; written by "
      "benchmarks/depthwise_ops.py. impl 'auto' picks the fastest impl that can run the "
      "conv, and 'xla' on a backend not listed here."),
           'backends': dict(sorted(backends.items()))}
  with open(table_path, 'w') as f:
    json.dump(table, f, indent=1)
    f.write('\n')
  return table


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--quick', action='store_true',
                      help='3 repetitions instead of 10 (smoke run, not for the record)')
  # XLA:CPU always uses one thread per core; match PyTorch to it on a 2-core machine.
  parser.add_argument('--threads', type=int, default=2,
                      help='PyTorch intra-op threads (XLA uses one per core)')
  parser.add_argument('--out', help='results JSON (required unless --auto-table-from)')
  parser.add_argument('--shapes', default=','.join(SHAPES))
  parser.add_argument('--impls', help='comma-separated; default: what this backend runs')
  parser.add_argument('--update-auto-table', action='store_true',
                      help="write this run's numbers into spatialmix_jax/kernels/depthwise_auto.json")
  parser.add_argument('--auto-table-from', metavar='RESULTS.json',
                      help='only rebuild the auto table entry from an earlier results file')
  args = parser.parse_args()
  if args.auto_table_from:
    update_auto_table(args.auto_table_from)
    return
  if not args.out:
    parser.error('--out is required')
  if args.quick and args.update_auto_table:
    parser.error('--quick numbers are a smoke test, not for the auto table')
  reps = 3 if args.quick else 10
  backend = jax.default_backend()
  impls = args.impls.split(',') if args.impls else _default_impls(backend)
  try:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(args.threads)
  except ImportError:
    torch = None

  load_before = os.getloadavg()
  records = []
  print(f'{"shape":6} {"impl":6} {"fwd ms":>9} {"fwd+bwd ms":>11} {"fwd+dx ms":>10}  '
        '(B, H, W, C, k, d, stride)')
  for name in args.shapes.split(','):
    shape = SHAPES[name]
    for impl in impls:
      if impl == 'torch':
        if torch is None:
          continue
        row = _torch_rows(torch, shape, reps)
      else:
        try:
          depthwise.resolve_impl(impl, *_conv_shapes(shape)[:2], backend,
                                 _conv_shapes(shape)[2])
        except (RuntimeError, ValueError) as e:
          print(f'{name:6} {impl:6} skipped: {e}', flush=True)
          continue
        row = _jax_rows(shape, impl, reps)
      print(f'{name:6} {impl:6} {row["fwd_ms"]:9.2f} {row["fwd_bwd_ms"]:11.2f} '
            f'{row["fwd_bwd_x_ms"]:10.2f}  {shape}', flush=True)
      records.append({'shape': name, 'dims': dict(zip(
          ('batch', 'height', 'width', 'channels', 'k', 'depth_multiplier', 'stride'),
          shape)), 'impl': impl, 'dtype': 'float32', 'reps': reps, **row})

  meta = {
      'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d'),
      'device_kind': jax.devices()[0].device_kind, 'cpu_model': _cpu_model(),
      'torch_threads': args.threads, 'jax': jax.__version__, 'backend': backend,
      'torch': torch.__version__ if torch else None, 'machine': platform.processor() or
      platform.machine(), 'cpu_count': os.cpu_count(), 'quick': args.quick,
      # Other jobs on a shared machine inflate every row; kept to judge the numbers.
      'load_average_before_after': [load_before[0], os.getloadavg()[0]],
      'auto': {n: depthwise.resolve_impl('auto', *_conv_shapes(s)[:2], backend,
                                         _conv_shapes(s)[2])
               for n, s in SHAPES.items()},
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'meta': meta, 'records': records}, f, indent=1)
  if args.update_auto_table:
    update_auto_table(args.out)


if __name__ == '__main__':
  main()
