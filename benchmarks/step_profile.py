"""What each mode's train step still computes, and where its time goes: an HLO-level account.

  python benchmarks/step_profile.py --out benchmarks/results/step_profile_cpu.json \
      [--models convmixer_128_4_k5_p2] [--modes full,chans,space] [--batch 128]

For each model and mode it compiles the project's real train step (`harness.compiled_step`,
as `throughput.py` times it), traces --steps steps with the JAX profiler, and sums the time of
every thunk XLA:CPU ran, grouped by what the HLO instruction computes: read from its
custom-call target (the native kernels), its `op_name` metadata (forward `jvp(...)`,
backward `transpose(jvp(...))`, the layer it belongs to) and its output shape (a pointwise
kernel gradient is C x C). The groups a frozen mode no longer needs are absent from its
compiled step, not just zeroed: their count is 0.

Thunks that run concurrently (XLA:CPU overlaps independent ones, e.g. a pointwise input
gradient and its kernel gradient) each count their own wall time, so two ops that share the
cores look slower than either alone. XLA's own (non-YNNPACK) dots run asynchronously on the
thread pool: their thunk returns at once, and their time shows up in the thunks running beside
them (the pointwise kernel gradient's inside the input gradient's).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from spatialmix_jax.infra import host_memory

if __name__ == '__main__':  # as main.py does: before any import starts a thread
  host_memory.retain_freed_memory()
from benchmarks import harness
import jax

from spatialmix_jax.data import datasets
from spatialmix_jax.modeling import freezing
# pylint: enable=g-import-not-at-top,wrong-import-position

_KERNELS = {
    'spatialmix_gelu_norm_fwd': 'GELU+BatchNorm forward',
    'spatialmix_gelu_norm_bwd': 'GELU+BatchNorm backward',
    'spatialmix_depthwise_fwd': 'depthwise forward',
    'spatialmix_depthwise_bwd_input': 'depthwise input gradient',
    'spatialmix_depthwise_bwd_kernel': 'depthwise kernel gradient',
}
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (\S+|\([^=]*?\)) ([\w\-]+)\(')


def instructions(hlo_text):
  """{name: (opcode, output type, custom-call target or '', op_name)} of the entry
  computation's instructions (the thunks the executable runs)."""
  table = {}
  in_entry = False
  for line in hlo_text.splitlines():
    if line.startswith('ENTRY '):
      in_entry = True
      continue
    if in_entry and line.startswith('}'):
      break
    match = _INSTRUCTION.match(line) if in_entry else None
    if match:
      target = re.search(r'custom_call_target="([^"]+)"', line)
      op_name = re.search(r'op_name="([^"]*)"', line)
      table[match.group(1)] = (match.group(3), match.group(2),
                               target.group(1) if target else '',
                               op_name.group(1) if op_name else '')
  return table


def category(name, opcode, shape, target, op_name, channels):
  """What an entry instruction computes, in words."""
  if target in _KERNELS:
    return _KERNELS[target]
  backward = 'transpose(jvp(' in op_name
  if 'add_any' in op_name or re.search(r'ConvMixer\.mix/add$', op_name):
    return 'residual add / its gradient'
  if 'PointwiseConv' in op_name:
    if 'reduce_sum' in op_name or op_name.endswith('/add'):
      return 'conv bias add / gradient'
    if not backward:
      return 'pointwise forward (matmul)'
    if re.match(rf'f32\[{channels},{channels}\]', shape):
      return 'pointwise kernel gradient (matmul)'
    return 'pointwise input gradient (matmul)'
  if 'DepthwiseConv' in op_name:
    return 'conv bias add / gradient'
  if backward and 'copy' in name and re.match(rf'f32\[{channels},', shape):
    return 'pointwise kernel gradient (layout copy)'
  if 'PatchStem' in op_name:
    return 'stem'
  if 'BatchNorm' in op_name:
    return 'BatchNorm running averages'
  if opcode in ('constant', 'parameter', 'get-tuple-element', 'tuple', 'bitcast'):
    return 'no work (buffers)'
  if 'jvp(' in op_name or 'Dense' in op_name:
    return 'head, loss, metrics'
  return 'optimizer update'


def profile(compiled, run, steps):
  """{thunk name: [total microseconds, count]} over `steps` traced steps."""
  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(run())
    trace = glob.glob(os.path.join(folder, '**', '*.trace.json.gz'), recursive=True)[0]
    with gzip.open(trace) as f:
      events = json.load(f)['traceEvents']
  del compiled
  totals = collections.defaultdict(lambda: [0.0, 0])
  for event in events:
    if event.get('ph') == 'X':
      totals[event['name']][0] += event['dur']
      totals[event['name']][1] += 1
  return totals


def account(model, mode, batch, steps):
  config = harness.make_config(model, mode, 'auto', batch, 'float32')
  experiment = harness.build_experiment(config)
  batch_np = harness.random_batch(datasets.get_spec(config.dataset), batch)
  compiled, state, device_batch, _ = harness.compiled_step(experiment, batch_np)
  holder = {'state': state}

  def run():
    holder['state'], metrics = compiled(holder['state'], device_batch)
    return metrics

  step_ms, times = harness.median_ms(run, steps, 3, jax.block_until_ready)
  table = instructions(compiled.as_text())
  groups = collections.defaultdict(lambda: {'ms': 0.0, 'instructions': 0})
  for name, (total_us, _) in profile(compiled, run, steps).items():
    if name not in table:
      continue  # runtime events (executor, thread pool), not thunks
    group = category(name, *table[name], config.model.width)
    groups[group]['ms'] += total_us / steps / 1e3
    groups[group]['instructions'] += 1
  return {'model': model, 'mode': mode, 'batch': batch,
          'step_ms_median': step_ms, 'step_ms': times,
          'groups': dict(sorted(groups.items(), key=lambda kv: -kv[1]['ms']))}


def markdown(records):
  names = []
  for record in records:
    names += [g for g in record['groups'] if g not in names]
  modes = [r['mode'] for r in records]
  lines = ['| computed in the step | ' + ' | '.join(f'{m} ms (ops)' for m in modes) + ' |',
           '|---|' + '---|' * len(modes)]
  for name in names:
    cells = []
    for record in records:
      group = record['groups'].get(name)
      cells.append(f'{group["ms"]:.1f} ({group["instructions"]})' if group else '— (0)')
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  lines.append('| **sum of op times** | ' + ' | '.join(
      f'{sum(g["ms"] for g in r["groups"].values()):.1f}' for r in records) + ' |')
  lines.append('| **step (median)** | ' + ' | '.join(
      f'{r["step_ms_median"]:.1f}' for r in records) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', required=True, help='JSON file to write (and .md beside it)')
  parser.add_argument('--models', default='convmixer_128_4_k5_p2')
  parser.add_argument('--modes', default=','.join(freezing.MODES))
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--steps', type=int, default=5, help='timed and traced steps')
  args = parser.parse_args(argv)
  models = [m for m in args.models.split(',') if m]
  modes = [m for m in args.modes.split(',') if m]
  known = {**harness.MODELS, **harness.SMOKE_MODELS}
  if any(m not in known for m in models) or any(m not in freezing.MODES for m in modes):
    parser.error(f'--models from {tuple(known)}, --modes from {freezing.MODES}')
  if args.batch < 1 or args.steps < 1:
    parser.error('--batch and --steps must be >= 1')
  header = {'cpu_model': harness.cpu_model(), 'cpu_count': os.cpu_count(),
            'host_memory': host_memory.retain_freed_memory(), 'jax': jax.__version__,
            'load_avg_start': os.getloadavg()}
  records = []
  for model in models:
    mine = [account(model, mode, args.batch, args.steps) for mode in modes]
    records += mine
    print(f'{model}, batch {args.batch}:\n' + markdown(mine), flush=True)
  header['load_avg_end'] = os.getloadavg()
  with open(args.out, 'w') as f:
    json.dump({'header': header, 'records': records}, f, indent=1)
  with open(os.path.splitext(args.out)[0] + '.md', 'w') as f:
    for model in models:
      f.write(f'{model}, batch {args.batch}, {header["cpu_model"]}, load average '
              f'{header["load_avg_start"][0]:.2f} -> {header["load_avg_end"][0]:.2f}:\n\n')
      f.write(markdown([r for r in records if r['model'] == model]) + '\n')


if __name__ == '__main__':
  main()
