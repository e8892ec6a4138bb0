"""Tables and figures of a finished (or partly finished) sweep: WORKDIR/report/.

  python -m spatialmix_jax.report --workdir=/tmp/sweep [--figures=fig5_convmixer_depth,...]
  python -m spatialmix_jax.report --reproduction --workdir=docs/results/repro_cifar10 \
      --output=docs/reproduction.md     # the paper's claims vs our grids (reproduction.py)

Reads every WORKDIR/<cell>/results.json (+ eval.json, config.json), groups cells that differ
only in their seed, and writes for every figure the cells allow (its x axis takes at least two
values among the cells it selects): NAME.png, NAME.csv (mean, std, n over seeds) and a
Markdown table in report.md. Lines of a figure are the other fields that vary among its cells
(mode, width, ...). `summary` (every cell group, all metrics) is always written.
"""

import csv
import json
import math
import os
import sys

import numpy as np

# (name, title, which cells, x field, y metric, y label)
FIGURES = (
    ('fig2_resnet_depth', 'Fig. 2: separable ResNet depth',
     lambda r: r['task'] == 'classification' and 'resnet' in r['model'], 'depth',
     'test_accuracy', 'test accuracy'),
    ('fig3_filter_families', 'Fig. 3: families of spatial filters',
     lambda r: r['task'] == 'classification', 'spatial_init', 'test_accuracy', 'test accuracy'),
    ('fig4_width', 'Fig. 4: ConvMixer width',
     lambda r: r['task'] == 'classification' and r['model'] == 'convmixer', 'width',
     'test_accuracy', 'test accuracy'),
    ('fig5_convmixer_depth', 'Fig. 5: ConvMixer depth',
     lambda r: r['task'] == 'classification' and r['model'] == 'convmixer', 'depth',
     'test_accuracy', 'test accuracy'),
    ('kernel_size', 'ConvMixer kernel size',
     lambda r: r['task'] == 'classification' and r['model'] == 'convmixer', 'kernel_size',
     'test_accuracy', 'test accuracy'),
    ('fig6_7_robustness', 'Figs. 6/7: accuracy under attack',
     lambda r: 'attack' in r, 'epsilon', 'attacked_accuracy', 'accuracy under attack'),
    ('smooth_strength', '§4.3.3: smoothed random filters (σ = 0: plain random)',
     lambda r: 'attack' in r, 'smooth_sigma', 'attacked_accuracy', 'accuracy under attack'),
    ('fig10_unshuffle_width', 'Figs. 10/B.4/B.5: un-shuffling PSNR vs width',
     lambda r: r['task'] == 'unshuffle', 'width', 'test_psnr', 'test PSNR (dB)'),
    ('fig10_unshuffle_depth', 'Figs. 10/B.4/B.5: un-shuffling PSNR vs depth',
     lambda r: r['task'] == 'unshuffle', 'depth', 'test_psnr', 'test PSNR (dB)'),
)
FIGURE_NAMES = tuple(f[0] for f in FIGURES)
# Fields that tell cells apart; a figure's lines are those that vary among its cells.
FIELDS = ('dataset', 'model', 'mode', 'depth', 'width', 'kernel_size', 'spatial_init',
          'smooth_sigma', 'adv_training_eps', 'attack', 'epsilon')
METRICS = ('test_accuracy', 'test_psnr', 'scrambled_psnr', 'attacked_accuracy')


def read_json(path):
  """The JSON record at `path`, None when the cell has not written it (yet)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_cells(workdir):
  """One row per finished cell: its distinguishing fields, seed and metrics."""
  rows = []
  for name in sorted(os.listdir(workdir)):
    celldir = os.path.join(workdir, name)
    results = read_json(os.path.join(celldir, 'results.json'))
    if results is None:
      continue
    config = read_json(os.path.join(celldir, 'config.json')) or {}
    model = results['model_config']
    adversarial = config.get('adversarial_training', {})
    row = {
        'cell': name, 'dataset': results['dataset'], 'task': results['task'],
        'model': results['model'], 'mode': results['mode'], 'depth': model['depth'],
        'width': model['width'], 'kernel_size': model['kernel_size'],
        'spatial_init': model['spatial_init'],
        'smooth_sigma': model['smooth_sigma'] if model['spatial_init'] == 'smooth' else 0.0,
        'adv_training_eps': adversarial.get('epsilon', 0.0) if adversarial.get('enabled')
                            else 0.0,
        'seed': results['seed'], 'step': results.get('step'),
    }
    for metric in ('test_accuracy', 'test_psnr', 'scrambled_psnr'):
      if metric in results:
        row[metric] = results[metric]
    rows.append(row)
    evaluated = read_json(os.path.join(celldir, 'eval.json')) or {}
    for attack, per_eps in evaluated.get('robustness', {}).items():
      for eps, accuracy in per_eps.items():
        rows.append({**row, 'attack': attack, 'epsilon': float(eps),
                     'attacked_accuracy': accuracy})
  return rows


def _varying(rows, exclude):
  fields = [f for f in FIELDS if f not in exclude and any(f in r for r in rows)]
  return [f for f in fields if len({r.get(f) for r in rows}) > 1]


# Categories in the paper's order; others follow alphabetically.
CATEGORY_ORDER = ('full', 'chans', 'space', 'random', 'same', 'box', 'identity', 'smooth')


def _sort_key(value):
  if isinstance(value, (int, float)):
    return (0, value, '')
  if value in CATEGORY_ORDER:
    return (1, CATEGORY_ORDER.index(value), '')
  return (2, 0, str(value))


def group(rows, keys, metric):
  """{key tuple: (mean, std, n)} of `metric` over the rows sharing `keys` (i.e. over seeds)."""
  values = {}
  for row in rows:
    if metric in row:
      values.setdefault(tuple(row.get(k) for k in keys), []).append(row[metric])
  return {key: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
          for key, v in sorted(values.items(), key=lambda kv: [_sort_key(x) for x in kv[0]])}


def _fmt(mean, std, n, metric):
  digits = 2 if 'psnr' in metric else 4
  return f'{mean:.{digits}f} ± {std:.{digits}f}' if n > 1 else f'{mean:.{digits}f}'


def _label(series_fields, key):
  return ', '.join(f'{f}={v}' for f, v in zip(series_fields, key)) or 'all'


def _write_csv(path, header, lines):
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(lines)


def figure(rows, out, name, title, x, metric, ylabel, prefix=''):
  """PNG + CSV of one figure; returns its Markdown section (None when the cells don't allow).

  `prefix` is the path from the Markdown file to `out` for its links.
  """
  rows = [r for r in rows if metric in r and x in r]
  xs = sorted({r[x] for r in rows}, key=_sort_key)
  if len(xs) < 2:
    return None
  series = _varying(rows, exclude=(x,))
  stats = group(rows, series + [x], metric)
  _write_csv(os.path.join(out, f'{name}.csv'), series + [x, f'{metric}_mean', f'{metric}_std',
                                                         'n'],
             [list(k) + [m, s, n] for k, (m, s, n) in stats.items()])

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  categorical = not all(isinstance(v, (int, float)) for v in xs)
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  lines = sorted({k[:-1] for k in stats}, key=lambda k: [_sort_key(v) for v in k])
  for index, line in enumerate(lines):
    points = [(xv, stats[line + (xv,)]) for xv in xs if line + (xv,) in stats]
    position = [xs.index(p[0]) + 0.6 * ((index + 0.5) / len(lines) - 0.5) if categorical
                else p[0] for p in points]
    means = [p[1][0] for p in points]
    stds = [p[1][1] for p in points]
    ax.errorbar(position, means, yerr=stds, marker='o', capsize=3,
                linestyle='none' if categorical else '-', label=_label(series, line))
  if metric == 'test_psnr':
    baseline = group(rows, [], 'scrambled_psnr')
    if baseline:
      ax.axhline(next(iter(baseline.values()))[0], color='gray', linestyle='--',
                 label='scrambled input')
  if categorical:
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_xlim(-0.5, len(xs) - 0.5)
  elif x in ('width', 'depth') and min(xs) > 0 and max(xs) / min(xs) >= 8:
    ax.set_xscale('log', base=2)
  ax.set_xlabel(x)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc='best')
  fig.tight_layout()
  fig.savefig(os.path.join(out, f'{name}.png'), dpi=120)
  plt.close(fig)

  header = ['lines'] + [str(v) for v in xs]
  table = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for line in lines:
    cells = [_fmt(*stats[line + (xv,)], metric) if line + (xv,) in stats else '—' for xv in xs]
    table.append('| ' + ' | '.join([_label(series, line)] + cells) + ' |')
  return (f'## {title}\n\n{ylabel} (mean ± std over seeds), x = {x}.\n\n'
          f'![{name}]({prefix}{name}.png)\n\n' + '\n'.join(table)
          + f'\n\nData: [{name}.csv]({prefix}{name}.csv)\n')


def summary(rows, out):
  """Every group of cells that differ only in seed, with all metrics (CSV + Markdown)."""
  plain = [r for r in rows if 'attack' not in r]
  keys = _varying(plain, exclude=('attack',)) or ['mode']
  metrics = [m for m in METRICS if any(m in r for r in plain)]
  stats = {m: group(plain, keys, m) for m in metrics}
  groups = sorted({k for s in stats.values() for k in s}, key=lambda k: [_sort_key(v) for v in k])
  header = keys + [f'{m}_{s}' for m in metrics for s in ('mean', 'std')] + ['n']
  lines = []
  for key in groups:
    line = list(key)
    n = 0
    for m in metrics:
      mean, std, n_m = stats[m].get(key, (math.nan, math.nan, 0))
      line += [mean, std]
      n = max(n, n_m)
    lines.append(line + [n])
  _write_csv(os.path.join(out, 'summary.csv'), header, lines)

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  metric = metrics[0]
  fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(groups) + 2), 3.4))
  means = [stats[metric].get(k, (math.nan,))[0] for k in groups]
  stds = [stats[metric].get(k, (0, 0.0))[1] for k in groups]
  ax.bar(range(len(groups)), means, yerr=stds, capsize=3, color='tab:blue')
  ax.set_xticks(range(len(groups)), ['\n'.join(map(str, k)) for k in groups], fontsize=7)
  ax.set_ylabel(metric)
  ax.set_title(' / '.join(keys), fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(out, 'summary.png'), dpi=120)
  plt.close(fig)

  table = ['| ' + ' | '.join(keys + metrics + ['seeds']) + ' |',
           '|' + '---|' * (len(keys) + len(metrics) + 1)]
  for key in groups:
    cells = [_fmt(*stats[m][key], m) if key in stats[m] else '—' for m in metrics]
    n = max(stats[m].get(key, (0, 0, 0))[2] for m in metrics)
    table.append('| ' + ' | '.join([str(v) for v in key] + cells + [str(n)]) + ' |')
  return ('## Summary\n\nEvery group of cells that differ only in their seed (mean ± std).'
          '\n\n![summary](summary.png)\n\n' + '\n'.join(table) + '\n\nData: [summary.csv]'
          '(summary.csv)\n')


def write_report(workdir, figures=None):
  """Writes WORKDIR/report/; returns the names of the figures written."""
  if figures:
    unknown = [f for f in figures if f not in FIGURE_NAMES]
    if unknown:
      raise ValueError(f'Unknown figure(s) {unknown}; choose from {FIGURE_NAMES}.')
  if not os.path.isdir(workdir):
    raise ValueError(f'No sweep in {workdir!r}: run python -m spatialmix_jax.sweep first.')
  rows = load_cells(workdir)
  if not rows:
    raise ValueError(f'No finished cell (results.json) under {workdir!r} yet.')
  out = os.path.join(workdir, 'report')
  os.makedirs(out, exist_ok=True)
  sweep = read_json(os.path.join(workdir, 'sweep.json')) or {}
  sections, written = [], []
  for name, title, select, x, metric, ylabel in FIGURES:
    if figures and name not in figures:
      continue
    # Attacked rows repeat their cell's clean metrics: only attack figures may read them.
    pool = rows if metric == 'attacked_accuracy' else [r for r in rows if 'attack' not in r]
    section = figure([r for r in pool if select(r)], out, name, title, x, metric, ylabel)
    if section:
      sections.append(section)
      written.append(name)
  sections.append(summary(rows, out))
  cells = sorted({r['cell'] for r in rows})
  head = (f'# Sweep report: {sweep.get("name", os.path.basename(os.path.abspath(workdir)))}\n\n'
          f'{len(cells)} finished cells in `{workdir}`'
          + (f' (of {len(sweep["cells"])} in the grid)' if 'cells' in sweep else '') + '.\n')
  with open(os.path.join(out, 'report.md'), 'w') as f:
    f.write('\n'.join([head] + sections))
  return written + ['summary']


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  try:
    if FLAGS.reproduction:
      from spatialmix_jax import reproduction  # pylint: disable=g-import-not-at-top
      output = FLAGS.output or os.path.join(FLAGS.workdir, 'reproduction.md')
      claims = reproduction.write(FLAGS.workdir, output)
      for claim in claims:
        print(f'{claim["verdict"]:>12}: {claim["claim"]}')
      print(f'Wrote {output}')
      return
    figures = [f for f in FLAGS.figures.split(',') if f] if FLAGS.figures else None
    written = write_report(FLAGS.workdir, figures)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'Wrote {", ".join(written)} to {os.path.join(FLAGS.workdir, "report")}')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'The sweep folder (python -m spatialmix_jax.sweep).')
  flags.DEFINE_string('figures', '', f'Comma-separated subset of {FIGURE_NAMES}.')
  flags.DEFINE_bool('reproduction', False, 'WORKDIR is a folder of the reproduction grids '
                    '(configs/sweeps/repro_cifar10.py): write the claim-by-claim document.')
  flags.DEFINE_string('output', '', 'With --reproduction: the Markdown file to write '
                      '(default WORKDIR/reproduction.md); figures go to a folder of its stem.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
