"""Reading a sweep's per-cell records and drawing grouped tables and figures from them: the
library below the sweep report (`report.py`) and the reproduction report
(`reproduction.py`).

A cell is one training run's folder: results.json (+ eval.json when it was attacked,
config.json). Rows are one per cell, plus one per (attack, ε) of an attacked cell; cells that
differ only in their seed are grouped into mean ± std.
"""

import csv
import json
import os

import numpy as np

from spatialmix_jax import plotting

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


def varying(rows, exclude):
  fields = [f for f in FIELDS if f not in exclude and any(f in r for r in rows)]
  return [f for f in fields if len({r.get(f) for r in rows}) > 1]


# Categories in the paper's order; others follow alphabetically.
CATEGORY_ORDER = ('full', 'chans', 'space', 'random', 'same', 'box', 'identity', 'smooth')


def sort_key(value):
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
          for key, v in sorted(values.items(), key=lambda kv: [sort_key(x) for x in kv[0]])}


def fmt(mean, std, n, metric):
  digits = 2 if 'psnr' in metric else 4
  return f'{mean:.{digits}f} ± {std:.{digits}f}' if n > 1 else f'{mean:.{digits}f}'


def line_label(series_fields, key):
  return ', '.join(f'{f}={v}' for f, v in zip(series_fields, key)) or 'all'


def write_csv(path, header, lines):
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(lines)


def figure(rows, out, name, title, x, metric, ylabel, prefix=''):
  """PNG + CSV of one figure; returns its Markdown section (None when the cells don't allow).

  `prefix` is the path from the Markdown file to `out` for its links.
  """
  rows = [r for r in rows if metric in r and x in r]
  xs = sorted({r[x] for r in rows}, key=sort_key)
  if len(xs) < 2:
    return None
  series = varying(rows, exclude=(x,))
  stats = group(rows, series + [x], metric)
  write_csv(os.path.join(out, f'{name}.csv'), series + [x, f'{metric}_mean', f'{metric}_std',
                                                         'n'],
             [list(k) + [m, s, n] for k, (m, s, n) in stats.items()])

  plt = plotting.pyplot()
  categorical = not all(isinstance(v, (int, float)) for v in xs)
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  lines = sorted({k[:-1] for k in stats}, key=lambda k: [sort_key(v) for v in k])
  for index, line in enumerate(lines):
    points = [(xv, stats[line + (xv,)]) for xv in xs if line + (xv,) in stats]
    position = [xs.index(p[0]) + 0.6 * ((index + 0.5) / len(lines) - 0.5) if categorical
                else p[0] for p in points]
    means = [p[1][0] for p in points]
    stds = [p[1][1] for p in points]
    ax.errorbar(position, means, yerr=stds, marker='o', capsize=3,
                linestyle='none' if categorical else '-', label=line_label(series, line))
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
    cells = [fmt(*stats[line + (xv,)], metric) if line + (xv,) in stats else '—' for xv in xs]
    table.append('| ' + ' | '.join([line_label(series, line)] + cells) + ' |')
  return (f'## {title}\n\n{ylabel} (mean ± std over seeds), x = {x}.\n\n'
          f'![{name}]({prefix}{name}.png)\n\n' + '\n'.join(table)
          + f'\n\nData: [{name}.csv]({prefix}{name}.csv)\n')
