"""Budget curves: how the Fig. 2 gap (clean accuracy, Full − Chans) and the Fig. 6 gaps
(attacked accuracy, Chans − Full) move with training length, from the `curve.json` of each cell
of a grid that evaluates along training (`configs/sweeps/paper_cifar10.py:budget_curve`).

Each point is a checkpoint of one long schedule evaluated on the way, not a model trained to
that budget with a schedule of its own length; every table and figure says so. A gap's
interval is Welch's 95 % t interval over the seeds of the two modes (unequal variances, no
pairing: the two modes' seeds share only their data order).

  python -m spatialmix_jax.study.curves --workdir=docs/results/paper_cifar10/budget_curve \
      --output=docs/reproduction
"""

import json
import math
import os
import sys

from spatialmix_jax.infra import plotting
from spatialmix_jax.study import significance

LABEL = 'evaluated along one 16-epoch run (checkpoints of one schedule, not shorter schedules)'
# (name, metric key, attack, sign): sign +1 reads the gap as Chans − Full, −1 as Full − Chans.
GAPS = (('clean accuracy, Full − Chans (Fig. 2)', 'test_accuracy', None, -1),
        ('FGSM ε = 1/255, Chans − Full (Fig. 6)', 'attacked', 'fgsm', +1),
        ('PGD-2 ε = 1/255, Chans − Full (Fig. 6)', 'attacked', 'pgd', +1))
EPSILON = '1'


def welch_interval(a, b, confidence=0.95):
  """(mean(a) − mean(b), low, high): Welch's t interval (`significance.welch`); (Δ, None,
  None) with fewer than two seeds a side."""
  difference = significance.welch(a, b)
  if math.isnan(difference.se):
    return difference.delta, None, None
  low, high = difference.interval(confidence)
  return difference.delta, float(low), float(high)


def load(workdir):
  """{mode: {seed: [points]}} of every cell of `workdir` that has a curve.json."""
  curves = {}
  for name in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, name, 'curve.json')
    config_path = os.path.join(workdir, name, 'config.json')
    if not (os.path.exists(path) and os.path.exists(config_path)):
      continue
    with open(config_path) as f:
      config = json.load(f)
    with open(path) as f:
      points = json.load(f)['points']
    curves.setdefault(config['mode'], {})[config['seed']] = points
  return curves


def _value(point, metric, attack):
  if attack is None:
    return point.get(metric)
  return point.get('robustness', {}).get(attack, {}).get(EPSILON)


def gap_table(curves):
  """[{gap, epoch, delta, low, high, n_full, n_chans}] for every budget point that both modes
  reached, per gap of GAPS (values in accuracy units)."""
  rows = []
  full, chans = curves.get('full', {}), curves.get('chans', {})
  epochs = sorted({round(p['epoch'], 6) for c in (full, chans) for ps in c.values() for p in ps})
  for name, metric, attack, sign in GAPS:
    for epoch in epochs:
      per_mode = []
      for mode in (full, chans):
        per_mode.append([v for ps in mode.values() for p in ps
                         if round(p['epoch'], 6) == epoch
                         and (v := _value(p, metric, attack)) is not None])
      if not per_mode[0] or not per_mode[1]:
        continue
      first, second = (per_mode[1], per_mode[0]) if sign > 0 else (per_mode[0], per_mode[1])
      delta, low, high = welch_interval(first, second)
      rows.append({'gap': name, 'epoch': epoch, 'delta': delta, 'low': low, 'high': high,
                   'n_full': len(per_mode[0]), 'n_chans': len(per_mode[1])})
  return rows


def markdown(rows):
  lines = [f'Gaps in accuracy points, {LABEL}; interval: Welch 95 % over seeds.', '',
           '| gap | epoch | Δ (pp) | 95 % interval (pp) | seeds full / chans |',
           '|---|---|---|---|---|']
  for r in rows:
    interval = ('—' if r['low'] is None
                else f'[{100 * r["low"]:+.1f}, {100 * r["high"]:+.1f}]')
    lines.append(f'| {r["gap"]} | {r["epoch"]:g} | {100 * r["delta"]:+.1f} | {interval} | '
                 f'{r["n_full"]} / {r["n_chans"]} |')
  return '\n'.join(lines) + '\n'


def figure(rows, path):
  plt = plotting.pyplot()
  names = [name for name, *_ in GAPS if any(r['gap'] == name for r in rows)]
  fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.4),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    mine = [r for r in rows if r['gap'] == name]
    epochs = [r['epoch'] for r in mine]
    deltas = [100 * r['delta'] for r in mine]
    ax.axhline(0, color='grey', linewidth=0.8)
    ax.plot(epochs, deltas, marker='o')
    bounded = [r for r in mine if r['low'] is not None]
    if bounded:
      ax.fill_between([r['epoch'] for r in bounded], [100 * r['low'] for r in bounded],
                      [100 * r['high'] for r in bounded], alpha=0.25, label='Welch 95 %')
      ax.legend(fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel('epoch (along one 16-epoch run)')
    ax.set_ylabel('gap (accuracy points)')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  workdir, output = flags.FLAGS.workdir, flags.FLAGS.output
  if not os.path.isdir(workdir):
    print(f'error: --workdir {workdir!r} is not a folder; pass the budget_curve grid\'s folder.',
          file=sys.stderr)
    sys.exit(2)
  rows = gap_table(load(workdir))
  if not rows:
    print(f'error: no cell of {workdir!r} has curve.json for both full and chans; run the '
          'budget_curve grid first.', file=sys.stderr)
    sys.exit(2)
  os.makedirs(output, exist_ok=True)
  figure(rows, os.path.join(output, 'budget_curve.png'))
  with open(os.path.join(output, 'budget_curve.md'), 'w') as f:
    f.write(markdown(rows))
  print(markdown(rows))


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'A grid folder whose cells have curve.json.')
  flags.DEFINE_string('output', None, 'Folder for budget_curve.png and budget_curve.md.')
  flags.mark_flags_as_required(['workdir', 'output'])
  app.run(main)
