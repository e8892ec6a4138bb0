"""What the benchmarks share: the benchmarked models and their configs, the JAX and PyTorch
train steps on a fixed batch, timing, the machine's matmul peak and description, and the
printed table.

Both frameworks use AdamW (lr 1e-3, weight decay 5e-3 on every weight, constant rate) at the
same batch size and thread count; the PyTorch twins are `torch_models.py`.
"""

import functools
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
from spatialmix_jax.data import datasets
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.infra import sharding
from spatialmix_jax.training import train_state
from spatialmix_jax.training import train_step
# pylint: enable=g-import-not-at-top,wrong-import-position

# name: (recipe config module, model overrides)
MODELS = {
    'convmixer_128_4_k5_p2': (convmixer_cifar10, dict(
        name='convmixer', width=128, depth=4, kernel_size=5, patch_size=2)),
    'convmixer_128_4_k8_p1': (convmixer_cifar10, dict(
        name='convmixer', width=128, depth=4, kernel_size=8, patch_size=1)),
    'convmixer_256_8_k5_p2': (convmixer_cifar10, dict(
        name='convmixer', width=256, depth=8, kernel_size=5, patch_size=2)),
    'sep_resnet20_d9': (resnet_cifar10, dict(
        name='sep_resnet_cifar', depth=20, kernel_size=3, depth_multiplier=9)),
    # The study's own models: the Fig. 2/3/6 ResNet-8 and the paper's CIFAR ConvMixer at the
    # depth its Fig. 5 grid trains.
    'sep_resnet8_d9': (resnet_cifar10, dict(
        name='sep_resnet_cifar', depth=8, kernel_size=3, depth_multiplier=9)),
    'convmixer_128_8_k8_p1': (convmixer_cifar10, dict(
        name='convmixer', width=128, depth=8, kernel_size=8, patch_size=1)),
}
# Models for smoke tests of the benchmark scripts: seconds, not minutes; never in a table.
SMOKE_MODELS = {
    'convmixer_16_1_k3_p4': (convmixer_cifar10, dict(
        name='convmixer', width=16, depth=1, kernel_size=3, patch_size=4)),
}
DTYPES = ('float32', 'bfloat16')
# Both frameworks: AdamW decaying every weight (torch.optim.AdamW over the parameters), a
# constant rate so that no schedule differs.
OPTIMIZER = dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=5e-3)


def pin_threads(threads):
  """Pins this process to `threads` cores; call before the first JAX computation (XLA:CPU
  sizes its thread pool from the affinity mask)."""
  cores = sorted(os.sched_getaffinity(0))
  if threads > len(cores):
    raise ValueError(f'--threads {threads} exceeds the {len(cores)} usable cores.')
  if threads < len(cores):
    os.sched_setaffinity(0, cores[:threads])
  return len(cores)


def make_config(model, mode, impl, batch, dtype):
  recipe, overrides = {**MODELS, **SMOKE_MODELS}[model]
  config = recipe.get_config()
  config.model.update(overrides)
  return benchmark_settings(config, mode, impl, batch, dtype)


def benchmark_settings(config, mode, impl, batch, dtype):
  """`config` (a recipe's, model already set) with what every benchmark row shares: the mode,
  dtype, batch and depthwise impl asked for, one micro-batch, no adversarial step, no label
  smoothing, and the AdamW both frameworks run (OPTIMIZER, constant rate, no clipping, every
  weight decayed)."""
  config.mode = mode
  config.dtype = dtype
  config.batch_size = batch
  config.grad_accum_steps = 1
  config.num_train_steps = 1000
  config.model.depthwise_impl = impl
  config.optimizer.name = 'adamw'
  config.optimizer.schedule = 'constant'
  config.optimizer.grad_clip_norm = 0.0
  config.optimizer.decay_biases_and_norms = True
  config.optimizer.update(OPTIMIZER)
  config.adversarial_training.enabled = False
  # PyTorch's peers compute plain cross-entropy (the ImageNet recipe smooths by 0.1).
  config.augment.label_smoothing = 0.0
  return config


def build_experiment(config):
  """The run's `Experiment`: it holds no data, so the benchmark reads none."""
  return experiment_lib.create_experiment(config)


def random_batch(spec, batch, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.random((batch,) + tuple(spec.image_shape), dtype=np.float32),
          'label': rng.integers(0, spec.num_classes, (batch,), dtype=np.int32)}


def initial_state(experiment):
  """(optimizer, initial train state replicated over the mesh). Both depend on the model and
  mode, not on the depthwise impl, so rows that differ only in impl can share them."""
  tx, _ = train_state.create_optimizer(experiment, experiment.config.num_train_steps, 100)
  state = jax.jit(functools.partial(train_state.init_state, experiment, tx),
                  out_shardings=sharding.replicated(experiment.mesh))()
  return tx, state


def compiled_step(experiment, batch_np, initial=None):
  """(compiled train step, initial state, device batch, compile seconds). `initial`: what
  `initial_state` returned for the same model and mode; its state is copied, since the step
  donates (deletes) the state it is given, and compiling init again is skipped."""
  if initial is None:
    tx, state = initial_state(experiment)
  else:
    tx, state = initial[0], jax.tree.map(jnp.copy, initial[1])
  batch = sharding.global_batch(batch_np, experiment.mesh)
  start = time.perf_counter()
  # Compiling once and calling the executable keeps the costed program the timed one.
  compiled = train_step.compile_train_step(experiment, tx).lower(state, batch).compile()
  return compiled, state, batch, time.perf_counter() - start


def xla_flops(compiled):
  try:
    cost = compiled.cost_analysis()
  except (NotImplementedError, RuntimeError):  # a backend without a cost model: not fatal
    return None
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
    cost = cost[0] if cost else {}
  flops = (cost or {}).get('flops')
  return float(flops) if flops is not None and flops >= 0 else None


def spread(values):
  """min / median / max (and how many) of repeated measurements."""
  return {'min': min(values), 'median': statistics.median(values), 'max': max(values),
          'n': len(values)}


def median_ms(run, steps, warmup, sync):
  for _ in range(warmup):
    sync(run())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    sync(run())
    times.append((time.perf_counter() - start) * 1e3)
  return statistics.median(times), times


def time_jax(config, batch_np, steps, warmup, initial=None):
  experiment = build_experiment(config)
  compiled, state, batch, compile_s = compiled_step(experiment, batch_np, initial)
  flops = xla_flops(compiled)
  holder = {'state': state}

  def run():
    holder['state'], metrics = compiled(holder['state'], batch)  # the state is donated
    return metrics

  step_ms, samples = median_ms(run, steps, warmup, jax.block_until_ready)
  metrics = jax.device_get(run())
  return {'step_ms': step_ms, 'step_ms_samples': samples, 'flops': flops,
          'compile_s': compile_s, 'xla_memory_bytes': xla_memory_bytes(compiled),
          'loss': float(metrics['loss']) / float(metrics['count'])}


def xla_memory_bytes(compiled):
  """Device bytes the step executable needs at its peak, from XLA's buffer assignment
  (arguments, outputs and temporaries, donated buffers counted once); None if not reported."""
  try:
    stats = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError):
    return None
  if stats is None:
    return None
  peak = getattr(stats, 'peak_memory_in_bytes', 0)
  if peak and peak > 0:
    return int(peak)
  total = (stats.argument_size_in_bytes + stats.output_size_in_bytes
           + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
  return int(total) if total > 0 else None


def torch_step(torch, config, device, compiled=False):
  """(step(x, y) -> loss, to_device(batch_np) -> (x, y)) of the PyTorch twin of `config`:
  AdamW over the trainable parameters, frozen collections requires_grad=False, channels_last,
  bf16 autocast when config.dtype is bfloat16. `compiled`: the model under `torch.compile`
  (inductor, forward and backward; the optimizer stays eager), compiled by its first steps."""
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  spec = datasets.get_spec(config.dataset)
  torch.manual_seed(config.seed)
  model = torch_models.create_model(
      config.model, num_classes=spec.num_classes, num_channels=spec.image_shape[-1],
      mean=spec.mean, std=spec.std)
  model = model.to(device, memory_format=torch.channels_last).train()
  torch_models.freeze(model, config.mode)
  if compiled:
    # Every model and mode a benchmark builds compiles the same forward code once more; the
    # default limit would silently fall back to eager after 8 of them.
    torch._dynamo.config.cache_size_limit = 256  # pylint: disable=protected-access
    forward = torch.compile(model)
  else:
    forward = model
  opt_config = config.optimizer
  optimizer = torch.optim.AdamW(
      [p for p in model.parameters() if p.requires_grad], lr=opt_config.learning_rate,
      betas=(opt_config.b1, opt_config.b2), eps=opt_config.eps,
      weight_decay=opt_config.weight_decay)
  bf16 = config.dtype == 'bfloat16'

  def step(x, y):
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      loss = F.cross_entropy(forward(x), y)
    loss.backward()
    optimizer.step()
    return loss

  def to_device(batch_np):
    # NHWC -> an NCHW view with channels_last strides.
    x = torch.from_numpy(batch_np['image']).permute(0, 3, 1, 2).to(device).contiguous(
        memory_format=torch.channels_last)
    return x, torch.from_numpy(batch_np['label'].astype(np.int64)).to(device)

  return step, to_device


def time_torch(torch, config, batch_np, steps, warmup, device):
  step, to_device = torch_step(torch, config, device)
  x, y = to_device(batch_np)

  def sync(loss):
    if device.type == 'cuda':
      torch.cuda.synchronize()
    return loss

  step_ms, samples = median_ms(lambda: step(x, y), steps, warmup, sync)
  return {'step_ms': step_ms, 'step_ms_samples': samples, 'flops': None, 'compile_s': None,
          'loss': step(x, y).detach().item()}


def matmul_gflops(n, dtype, reps):
  """Achieved GFLOP/s of an n x n jnp.dot: the machine's practical peak for that dtype."""
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
  b = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
  dot = jax.jit(jnp.dot)
  ms, _ = median_ms(lambda: dot(a, b), reps, 1, jax.block_until_ready)
  return 2 * n ** 3 / (ms * 1e-3) / 1e9


def cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def ratio(a, b):
  return a / b if a is not None and b else None


def format_row(record, columns, titles=None):
  """One fixed-width line of `record` for `columns` ((key, width, format), ...); '-' for None.
  With `titles`, the header line instead."""
  cells = []
  for key, width, fmt in columns:
    if titles is not None:
      title = titles.get(key, key)
      cells.append(f'{title:<{width}}' if fmt == 's' else f'{title:>{width}}')
      continue
    value = record.get(key)
    cells.append(f'{"-":>{width}}' if value is None else
                 f'{value:<{width}{fmt}}' if fmt == 's' else f'{value:>{width}{fmt}}')
  return ' '.join(cells)
