"""End to end, as a user runs it: `python main.py` against the PyTorch peer, in every mode.

  python benchmarks/end_to_end.py --peer_dir PEER_DIR --data_dir ../shared/tensorflow_datasets \
      --out benchmarks/results/end_to_end_cpu.json [--reps 3] [--modes full,chans,space]

The project's number is main.py's own last progress line (steps/s x batch over the last
logging window; compilation and the first window excluded) for ConvMixer-128/4 k5 p2, batch
128, float32, flips only, on CIFAR-10 from --data_dir. The peer is the impulse_init ConvMixer
(`../shared/tools/peer_convmixer_cifar.py`, its model file from PEER_DIR, a fetched copy of
github osiriszjq/impulse_init) on the same images held in memory, 2 threads, its img/s over
one epoch of --peer_train images. Each repetition runs every mode of both, interleaved
(project, peer, peer given the project's malloc settings, next mode), so a slow minute hits
all of them; the load average is recorded around each run. The table gives min / median / max
over the repetitions and the ratio of medians.

The peer runs as shipped (what its user would run) and, in the `peer, same malloc` column,
with the glibc settings `spatialmix_jax/infra/host_memory.py` gives the project's processes
(GLIBC_TUNABLES), since it gains from them too.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
PEER_SCRIPT = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'tools',
                           'peer_convmixer_cifar.py')
MODES = ('full', 'chans', 'space')
# host_memory.SETTINGS as glibc tunables, for a process the project does not start itself (a
# tunable takes no -1: trimming is turned off by the largest threshold it accepts).
SAME_MALLOC = ('glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:'
               'glibc.malloc.trim_threshold=18446744073709551615')
MODEL_FLAGS = ('--config.dtype=float32', '--config.model.width=128', '--config.model.depth=4',
               '--config.model.kernel_size=5', '--config.model.patch_size=2',
               '--config.batch_size=128', '--config.augment.randaugment_num_ops=0',
               '--config.eval.max_examples=1000')
_PROGRESS = re.compile(r'Step (\d+)/(\d+): ([\d.]+) steps/s \(([\d.]+) img/s\)')
BATCH = 128


def main_py_command(mode, workdir, data_dir, steps, window):
  return [sys.executable, os.path.join(REPO_ROOT, 'main.py'),
          '--config=' + os.path.join(REPO_ROOT, 'configs', 'convmixer_cifar10.py'),
          f'--workdir={workdir}', f'--config.mode={mode}', f'--config.data_dir={data_dir}',
          f'--config.num_train_steps={steps}', f'--config.log_every_steps={window}',
          *MODEL_FLAGS]


def last_progress_img_per_s(log):
  """img/s of main.py's last progress line: steps/s x batch, unrounded."""
  lines = _PROGRESS.findall(log)
  if not lines:
    raise RuntimeError('main.py printed no progress line; its output ends:\n' + log[-3000:])
  return float(lines[-1][2]) * BATCH


def peer_img_per_s(output):
  """The peer's img/s, from the JSON line it prints last."""
  for line in reversed(output.strip().splitlines()):
    if line.startswith('{'):
      return float(json.loads(line)['img_per_s'])
  raise RuntimeError('the peer printed no result line; its output ends:\n' + output[-3000:])


def _run(command, env=None):
  load = os.getloadavg()[0]
  started = time.perf_counter()
  done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
  if done.returncode:
    raise RuntimeError(f'{command[:3]} failed ({done.returncode}):\n' +
                       (done.stdout + done.stderr)[-3000:])
  return done.stdout + done.stderr, {'load_before': load, 'load_after': os.getloadavg()[0],
                                     'wall_s': round(time.perf_counter() - started, 1)}


def cifar_arrays(data_dir, path):
  """The peer's input: CIFAR-10 from `data_dir` as an .npz at `path` (made once)."""
  if os.path.exists(path):
    return path
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  arrays = {}
  for split in ('train', 'test'):
    data = tfds.as_numpy(tfds.load('cifar10', split=split, data_dir=data_dir, batch_size=-1))
    arrays[f'x_{split}'], arrays[f'y_{split}'] = data['image'], data['label']
  np.savez(path, **arrays)
  return path


def measure(args):
  runs = []
  for rep in range(args.reps):
    for mode in args.modes:
      with tempfile.TemporaryDirectory() as workdir:
        log, meta = _run(main_py_command(mode, workdir, args.data_dir, args.steps, args.window))
      runs.append(dict(rep=rep, mode=mode, who='project', img_per_s=last_progress_img_per_s(log),
                       **meta))
      print(_line(runs[-1]), flush=True)
      peer = [sys.executable, args.peer_script, args.peer_dir, args.peer_data, mode,
              '--epochs', '1', '--train', str(args.peer_train)]
      for who, tunables in (('peer', None), ('peer_same_malloc', SAME_MALLOC)):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        env.pop('GLIBC_TUNABLES', None)
        if tunables:
          env['GLIBC_TUNABLES'] = tunables
        output, meta = _run(peer, env)
        runs.append(dict(rep=rep, mode=mode, who=who, img_per_s=peer_img_per_s(output), **meta))
        print(_line(runs[-1]), flush=True)
  return runs


def _line(run):
  return (f'rep {run["rep"]} {run["mode"]:5s} {run["who"]:16s} {run["img_per_s"]:7.1f} img/s '
          f'(load {run["load_before"]:.2f} -> {run["load_after"]:.2f}, {run["wall_s"]} s)')


def summarise(runs, modes):
  rows = []
  for mode in modes:
    row = {'mode': mode}
    for who in ('project', 'peer', 'peer_same_malloc'):
      values = [r['img_per_s'] for r in runs if r['mode'] == mode and r['who'] == who]
      row[who] = harness.spread(values) if values else None
    row['ratio'] = row['project']['median'] / row['peer']['median']
    row['ratio_same_malloc'] = row['project']['median'] / row['peer_same_malloc']['median']
    rows.append(row)
  full = {r['mode']: r for r in rows}.get('full')
  for row in rows:
    for who in ('project', 'peer'):
      row[f'{who}_time_vs_full'] = (full[who]['median'] / row[who]['median']) if full else None
  return rows


def markdown(rows, header):
  def cell(s):
    return f'{s["median"]:.0f} ({s["min"]:.0f}–{s["max"]:.0f})'

  def number(value):
    return '—' if value is None else f'{value:.2f}'
  lines = [
      f'End to end on {header["cpu_model"]}, {header["threads"]} threads; ConvMixer-128/4 k5 p2, '
      f'batch 128, float32, flips only, CIFAR-10; {header["reps"]} interleaved repetitions, '
      f'median (min–max) img/s; load average {header["load_avg_start"][0]:.2f} before, '
      f'{header["load_avg_end"][0]:.2f} after; `python benchmarks/end_to_end.py` '
      f'({header["date"]}).', '',
      '| mode | project (main.py) | peer | project / peer | peer, same malloc | project / that '
      '| project time vs full | peer time vs full |',
      '|---|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f'| {r["mode"]} | {cell(r["project"])} | {cell(r["peer"])} | '
                 f'{r["ratio"]:.2f} | {cell(r["peer_same_malloc"])} | '
                 f'{r["ratio_same_malloc"]:.2f} | {number(r["project_time_vs_full"])} | '
                 f'{number(r["peer_time_vs_full"])} |')
  return '\n'.join(lines) + '\n'


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', required=True, help='JSON file to write (and .md beside it)')
  parser.add_argument('--peer_dir', required=True, help='folder with the peer\'s convmixer.py')
  parser.add_argument('--data_dir', required=True, help='folder with TFDS cifar10 prepared')
  parser.add_argument('--peer_data', default=os.path.join(tempfile.gettempdir(), 'cifar10.npz'),
                      help='CIFAR-10 arrays for the peer (made from --data_dir when missing)')
  parser.add_argument('--peer_script', default=PEER_SCRIPT)
  parser.add_argument('--modes', default=','.join(MODES))
  parser.add_argument('--reps', type=int, default=3)
  parser.add_argument('--steps', type=int, default=80, help='main.py steps')
  parser.add_argument('--window', type=int, default=20, help='main.py logging window')
  parser.add_argument('--peer_train', type=int, default=6400, help='peer training images')
  parser.add_argument('--threads', type=int, default=2)
  args = parser.parse_args(argv)
  args.modes = [m for m in args.modes.split(',') if m]
  if not args.modes or any(m not in MODES for m in args.modes):
    parser.error(f'--modes: choose from {MODES}')
  if args.reps < 1 or args.steps < 2 * args.window or args.window < 1:
    parser.error('--reps >= 1, --window >= 1 and --steps >= 2 x --window')
  for path, what in ((os.path.join(args.peer_dir, 'convmixer.py'), '--peer_dir'),
                     (args.peer_script, '--peer_script')):
    if not os.path.exists(path):
      parser.error(f'{what}: {path} does not exist')
  return args


def main(argv=None):
  args = parse_args(argv)
  args.peer_data = cifar_arrays(args.data_dir, args.peer_data)
  header = {'cpu_model': harness.cpu_model(), 'cpu_count': os.cpu_count(),
            'threads': args.threads, 'reps': args.reps, 'steps': args.steps,
            'window': args.window, 'peer_train': args.peer_train,
            'date': time.strftime('%Y-%m-%d'), 'load_avg_start': os.getloadavg()}
  print(f'{header["cpu_model"]}; load average {header["load_avg_start"][0]:.2f}', flush=True)
  runs = measure(args)
  header['load_avg_end'] = os.getloadavg()
  rows = summarise(runs, args.modes)
  with open(args.out, 'w') as f:
    json.dump({'header': header, 'rows': rows, 'runs': runs}, f, indent=1)
  table = markdown(rows, header)
  with open(os.path.splitext(args.out)[0] + '.md', 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  main()
