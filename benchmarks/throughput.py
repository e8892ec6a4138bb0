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

Analytic count: a conv or dense layer with M multiply-adds in its forward pass (for a conv,
M = N·H_out·W_out·C_out·(C_in/groups)·k², padded taps included) costs 2M FLOPs forward,
2M for its input gradient when any trainable weight lies before it (so never for the layer
reading the image) and 2M for its weight gradient when its collection is trainable. Frozen
modes thus save the weight gradients of the frozen mixer and, where the frozen layers come
first, input gradients. Elementwise work (BatchNorm, activations, optimizer) is left out;
XLA counts it, but counts only the non-padding taps of a conv and each `while`/`scan` body
once (the 'shift' impl's kernel gradient is such a loop), and nothing inside custom calls
('native'), so its count is a lower bound for those impls.

--threads N pins the process (JAX's XLA:CPU pool sizes itself from the affinity mask) and
sets torch.set_num_threads(N). Timings are only meaningful on an otherwise idle machine:
the load average at start and end is in the JSON header.
"""

import argparse
import dataclasses
import functools
import json
import math
import os
import platform
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

from configs import convmixer_cifar10
from configs import resnet_cifar10
from spatialmix_jax import datasets
from spatialmix_jax import depthwise
from spatialmix_jax import depthwise_native
from spatialmix_jax import experiment as experiment_lib
from spatialmix_jax import freezing
from spatialmix_jax import models
from spatialmix_jax import sharding
from spatialmix_jax import train_state
from spatialmix_jax import train_step
# pylint: enable=g-import-not-at-top,wrong-import-position

# name: (recipe config module, model overrides)
MODELS = {
    'convmixer_128_4_k8_p1': (convmixer_cifar10, dict(
        name='convmixer', width=128, depth=4, kernel_size=8, patch_size=1)),
    'convmixer_256_8_k5_p2': (convmixer_cifar10, dict(
        name='convmixer', width=256, depth=8, kernel_size=5, patch_size=2)),
    'sep_resnet20_d9': (resnet_cifar10, dict(
        name='sep_resnet_cifar', depth=20, kernel_size=3, depth_multiplier=9)),
}
DTYPES = ('float32', 'bfloat16')
# Both frameworks: AdamW decaying every weight (torch.optim.AdamW over the parameters), a
# constant rate so that no schedule differs.
OPTIMIZER = dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=5e-3)
QUICK = dict(models=('convmixer_128_4_k8_p1', 'sep_resnet20_d9'), modes=('full', 'chans'),
             impls=('auto',), batch=16, steps=3, warmup=1, matmul=1024)


# ---------------------------------------------------------------------------------------
# Analytic FLOPs.

@dataclasses.dataclass(frozen=True)
class Layer:
  """A weight-bearing layer in forward order; `macs` = forward multiply-adds (0: no matmul)."""
  name: str
  collection: str
  macs: int


def conv_macs(batch, out_h, out_w, out_channels, in_per_group, k):
  return batch * out_h * out_w * out_channels * in_per_group * k * k


def layers_of(model_config, image_shape, num_classes, batch):
  """The conv/dense layers (and BatchNorm, as 0-MAC `params`) of a model, in forward order."""
  mc = model_config
  h, w, c = image_shape
  bn = lambda name: Layer(name, 'params', 0)
  if mc.name == 'convmixer':
    p, width, k = mc.patch_size, mc.width, mc.kernel_size
    h, w = h // p, w // p  # VALID patch conv
    out = [Layer('stem', 'stem', conv_macs(batch, h, w, width, c, p)), bn('stem_bn')]
    for i in range(mc.depth):
      out += [Layer(f'block{i}.depthwise', 'spatial', conv_macs(batch, h, w, width, 1, k)),
              bn(f'block{i}.bn1'),
              Layer(f'block{i}.pointwise', 'channel', conv_macs(batch, h, w, width, width, 1)),
              bn(f'block{i}.bn2')]
    return out + [Layer('head', 'params', batch * width * num_classes)]
  if mc.name == 'sep_resnet_cifar':
    n, k, d = (mc.depth - 2) // 6, mc.kernel_size, mc.depth_multiplier
    widths = [16 * mc.width_multiplier, 32 * mc.width_multiplier, 64 * mc.width_multiplier]

    def separable(name, c_in, c_out, out_h, out_w):
      return [Layer(f'{name}.depthwise', 'spatial', conv_macs(batch, out_h, out_w, c_in * d, 1, k)),
              Layer(f'{name}.pointwise', 'channel',
                    conv_macs(batch, out_h, out_w, c_out, c_in * d, 1))]

    out = separable('stem', c, widths[0], h, w)
    c = widths[0]
    for stage, width in enumerate(widths):
      for block in range(n):
        stride = 2 if stage > 0 and block == 0 else 1
        h, w = -(-h // stride), -(-w // stride)
        name = f'stage{stage}.block{block}'
        out.append(bn(f'{name}.bn1'))
        if stride != 1 or c != width:
          out.append(Layer(f'{name}.shortcut', 'channel', conv_macs(batch, h, w, width, c, 1)))
        out += separable(f'{name}.conv1', c, width, h, w) + [bn(f'{name}.bn2')]
        out += separable(f'{name}.conv2', width, width, h, w)
        c = width
    return out + [bn('final_bn'), Layer('head', 'params', batch * c * num_classes)]
  raise ValueError(f'No analytic FLOP count for model {mc.name!r}; choose one of '
                   f"('convmixer', 'sep_resnet_cifar').")


def analytic_flops(layers, frozen):
  """Forward + backward FLOPs of one train step: 2·M fwd, 2·M dX if needed, 2·M dW if trained."""
  total, trainable_upstream = 0, False
  for layer in layers:
    trainable = layer.collection not in frozen
    total += 2 * layer.macs * (1 + trainable_upstream + trainable)
    trainable_upstream = trainable_upstream or trainable
  return total


def depthwise_shapes(model_config, image_shape, batch):
  """(x shape, kernel shape) of every depthwise conv, for resolving impl='auto'."""
  mc = model_config
  h, w, c = image_shape
  if mc.name == 'convmixer':
    h, w = h // mc.patch_size, w // mc.patch_size
    k = mc.kernel_size
    return [((batch, h, w, mc.width), (k, k, 1, mc.width))] * mc.depth
  n, k, d = (mc.depth - 2) // 6, mc.kernel_size, mc.depth_multiplier
  shapes = [((batch, h, w, c), (k, k, 1, c * d))]
  c = 16 * mc.width_multiplier
  for stage in range(3):
    width = 16 * mc.width_multiplier * 2 ** stage
    for block in range(n):
      shapes.append(((batch, h, w, c), (k, k, 1, c * d)))
      if stage > 0 and block == 0:
        h, w = -(-h // 2), -(-w // 2)
      shapes.append(((batch, h, w, width), (k, k, 1, width * d)))
      c = width
  return shapes


# ---------------------------------------------------------------------------------------
# Configs and the JAX step.

def make_config(model, mode, impl, batch, dtype):
  recipe, overrides = MODELS[model]
  config = recipe.get_config()
  config.mode = mode
  config.dtype = dtype
  config.batch_size = batch
  config.grad_accum_steps = 1
  config.num_train_steps = 1000
  config.model.update(overrides)
  config.model.depthwise_impl = impl
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'constant'
  config.optimizer.grad_clip_norm = 0.0
  config.optimizer.decay_biases_and_norms = True
  config.optimizer.update(OPTIMIZER)
  config.adversarial_training.enabled = False
  return config


def build_experiment(config):
  """The run's `Experiment`: it holds no data, so the benchmark reads none."""
  return experiment_lib.create_experiment(config)


def random_batch(spec, batch, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.random((batch,) + tuple(spec.image_shape), dtype=np.float32),
          'label': rng.integers(0, spec.num_classes, (batch,), dtype=np.int32)}


def compiled_step(experiment, batch_np):
  """(compiled train step, initial state, device batch, compile seconds)."""
  tx, _ = train_state.create_optimizer(experiment, experiment.config.num_train_steps, 100)
  repl = sharding.replicated(experiment.mesh)
  state = jax.jit(functools.partial(train_state.init_state, experiment, tx),
                  out_shardings=repl)()
  batch = sharding.global_batch(batch_np, experiment.mesh)
  start = time.perf_counter()
  # Compiling once and calling the executable keeps the costed program the timed one.
  compiled = train_step.compile_train_step(experiment, tx).lower(state, batch).compile()
  return compiled, state, batch, time.perf_counter() - start


def xla_flops(compiled):
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
    cost = cost[0] if cost else {}
  flops = (cost or {}).get('flops')
  return float(flops) if flops is not None and flops >= 0 else None


def _median_ms(run, steps, warmup, sync):
  for _ in range(warmup):
    sync(run())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    sync(run())
    times.append((time.perf_counter() - start) * 1e3)
  return statistics.median(times), times


def time_jax(config, batch_np, steps, warmup):
  experiment = build_experiment(config)
  compiled, state, batch, compile_s = compiled_step(experiment, batch_np)
  flops = xla_flops(compiled)
  holder = {'state': state}

  def run():
    holder['state'], metrics = compiled(holder['state'], batch)  # the state is donated
    return metrics

  step_ms, samples = _median_ms(run, steps, warmup, jax.block_until_ready)
  metrics = jax.device_get(run())
  return {'step_ms': step_ms, 'step_ms_samples': samples, 'flops': flops,
          'compile_s': compile_s,
          'loss': float(metrics['loss']) / float(metrics['count'])}


def time_torch(torch, config, batch_np, steps, warmup, device):
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  spec = datasets.get_spec(config.dataset)
  torch.manual_seed(config.seed)
  model = torch_models.create_model(
      config.model, num_classes=spec.num_classes, num_channels=spec.image_shape[-1],
      mean=spec.mean, std=spec.std)
  model = model.to(device, memory_format=torch.channels_last).train()
  torch_models.freeze(model, config.mode)
  opt_config = config.optimizer
  optimizer = torch.optim.AdamW(
      [p for p in model.parameters() if p.requires_grad], lr=opt_config.learning_rate,
      betas=(opt_config.b1, opt_config.b2), eps=opt_config.eps,
      weight_decay=opt_config.weight_decay)
  # NHWC -> an NCHW view with channels_last strides.
  x = torch.from_numpy(batch_np['image']).permute(0, 3, 1, 2).to(device).contiguous(
      memory_format=torch.channels_last)
  y = torch.from_numpy(batch_np['label'].astype(np.int64)).to(device)
  bf16 = config.dtype == 'bfloat16'

  def run():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss

  def sync(loss):
    if device.type == 'cuda':
      torch.cuda.synchronize()
    return loss

  step_ms, samples = _median_ms(run, steps, warmup, sync)
  return {'step_ms': step_ms, 'step_ms_samples': samples, 'flops': None, 'compile_s': None,
          'loss': run().detach().item()}


def matmul_gflops(n, dtype, reps):
  """Achieved GFLOP/s of an n x n jnp.dot: the machine's practical peak for that dtype."""
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
  b = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
  dot = jax.jit(jnp.dot)
  ms, _ = _median_ms(lambda: dot(a, b), reps, 1, jax.block_until_ready)
  return 2 * n ** 3 / (ms * 1e-3) / 1e9


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
  _check_choices('--peak-tflops dtype', tuple(peaks), DTYPES)
  return peaks


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', required=True, help='JSON file to write')
  parser.add_argument('--quick', action='store_true',
                      help=f'smoke run: {QUICK} unless given explicitly')
  parser.add_argument('--models', help=f'comma-separated; default all of {tuple(MODELS)}')
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
                      help=f'comma-separated compute dtypes from {DTYPES}')
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
  args.models = _csv(args.models) if args.models else quick.get('models', tuple(MODELS))
  args.modes = _csv(args.modes) if args.modes else quick.get('modes', freezing.MODES)
  args.impls = _csv(args.impls) if args.impls else quick.get('impls')
  for name, default in (('batch', 64), ('steps', 10), ('warmup', 2)):
    if getattr(args, name) is None:
      setattr(args, name, quick.get(name, default))
  args.dtype = _csv(args.dtype)
  _check_choices('--models', args.models, MODELS)
  _check_choices('--modes', args.modes, freezing.MODES)
  if args.impls is not None:
    _check_choices('--impls', args.impls, ('auto',) + depthwise.IMPLS)
  _check_choices('--dtype', args.dtype, DTYPES)
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


def _cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _available_impls(backend, requested):
  """The impls to time; the default list drops 'native' where it cannot run and 'pallas'
  on CPU, where it only runs interpreted (a test path)."""
  native_ok = backend == 'cpu' and depthwise_native.available()
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
      'cpu_model': _cpu_model(),
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
      'optimizer': dict(name='adamw', schedule='constant', **OPTIMIZER),
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


def _format_row(record):
  cells = []
  for key, width, fmt in _COLUMNS:
    value = record.get(key)
    cells.append(f'{"-":>{width}}' if value is None else
                 f'{value:<{width}{fmt}}' if fmt == 's' else f'{value:>{width}{fmt}}')
  return ' '.join(cells)


def _title_row():
  return ' '.join(f'{_TITLES.get(k, k):<{w}}' if f == 's' else f'{_TITLES.get(k, k):>{w}}'
                  for k, w, f in _COLUMNS)


def _ratio(a, b):
  return a / b if a is not None and b else None


def main(argv=None):
  args = parse_args(argv)
  cores = sorted(os.sched_getaffinity(0))
  if args.threads < len(cores):
    # Before the first JAX call: XLA:CPU sizes its thread pool from the affinity mask.
    os.sched_setaffinity(0, cores[:args.threads])
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
      print('torch not importable (pip install -e ".[bench]"): no PyTorch rows.')
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
  peak_gflops = {d: matmul_gflops(args.matmul_size, jnp.dtype(d), 3 if args.quick else 10)
                 for d in args.dtype}
  header = _header(args, backend, torch, torch_device, peak_gflops, impls)
  load = header['load_avg_start'][0]
  print(f'{header["cpu_model"]}, {args.threads} threads, JAX {backend} '
        f'({header["jax_devices"]}), torch {header["torch"]} on {header["torch_device"]}; '
        f'matmul peak {", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in peak_gflops.items())}; '
        f'load average {load:.2f}' +
        (' -- MACHINE BUSY: timings not meaningful' if load > 0.5 * len(cores) else ''))
  print(_title_row(), flush=True)

  records = []
  for dtype in args.dtype:
    for model in args.models:
      for mode in args.modes:
        config = make_config(model, mode, impls[0], args.batch, dtype)
        spec = datasets.get_spec(config.dataset)
        batch_np = random_batch(spec, args.batch)
        experiment = build_experiment(config)
        analytic = analytic_flops(layers_of(config.model, experiment.image_shape,
                                            spec.num_classes, args.batch), experiment.frozen)
        auto = sorted({depthwise.resolve_impl('auto', x, k, backend) for x, k in
                       depthwise_shapes(config.model, experiment.image_shape, args.batch)}
                      ) if 'auto' in impls else []
        runs = ([('torch', 'torch')] if torch else []) + [('jax', i) for i in impls]
        torch_ips = None
        for framework, impl in runs:
          if framework == 'torch':
            result = time_torch(torch, config, batch_np, args.steps, args.warmup, torch_device)
          else:
            try:
              result = time_jax(make_config(model, mode, impl, args.batch, dtype), batch_np,
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
          record['ratio_vs_torch'] = _ratio(record['img_per_s'], torch_ips)
          full = next((r for r in records if r['mode'] == 'full' and all(
              r[k] == record[k] for k in ('model', 'impl', 'framework', 'dtype'))), None)
          record['time_vs_full'] = _ratio(record['step_ms'], full and full['step_ms'])
          record['flops_vs_full'] = _ratio(record['flops'], full and full['flops'])
          record['analytic_vs_full'] = _ratio(analytic, full and full['analytic_flops'])
          records.append(record)
          print(_format_row(record), flush=True)

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
