"""Reading a sweep's per-cell records and drawing grouped tables and figures from them: the
library below the sweep report (`report.py`) and the reproduction report
(`reproduction.py`).

A cell is one training run's folder: results.json (+ eval.json when it was attacked,
config.json). Rows are one per cell, plus one per (attack, ε) of an attacked cell; cells that
differ only in their seed are grouped into mean ± std.
"""

import csv
import functools
import json
import os

import numpy as np

from spatialmix_jax.config import config_schema
from spatialmix_jax.infra import plotting

METRICS = ('test_accuracy', 'test_psnr', 'scrambled_psnr', 'attacked_accuracy')
ATTACK_FIELDS = ('attack', 'epsilon')
# Config fields that say how a run was carried out, not what was run (where the data lie, how
# often to log, checkpoint or evaluate on the way): cells differing only in these and in their
# seed are seeds of one experiment. Every other field that differs between cells keeps them
# apart.
BOOKKEEPING_FIELDS = ('seed', 'data_dir', 'log_every_steps', 'checkpoint_every_steps',
                      'keep_checkpoints', 'eval_every_steps', 'eval_step')
# Fields of a row that name a cell or describe its run, not what was run: never compared.
RECORD_FIELDS = ('grid', 'cell', 'step', 'wall_time_s', 'frozen_unchanged')
# Renamed fields, as evaluation.load_saved_config reads them.
_RENAMED = {'model.init': 'model.init_scheme'}


def read_json(path):
  """The JSON record at `path`, None when the cell has not written it (yet)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def flatten(tree, prefix=''):
  """{'model.width': 128, ...} of a nested dict."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


@functools.lru_cache(maxsize=None)
def _defaults():
  """The schema's flat defaults, built once (callers copy before changing them)."""
  return flatten(config_schema.get_config().to_dict())


def cell_config(config_json, results):
  """The flat config of a cell: the schema's defaults overlaid with its config.json (or, for a
  record without one, what results.json says), with fields that do nothing in this cell set to
  a neutral value so that they cannot tell cells apart."""
  if config_json is None:
    config_json = {'model': results['model_config'], 'mode': results['mode'],
                   'dataset': results['dataset'], 'task': results['task'],
                   'seed': results['seed']}
  saved = {_RENAMED.get(k, k): v for k, v in flatten(config_json).items()}
  if 'eval.pgd_variant' not in saved and 'eval.pgd_random_start' in saved:
    # Before eval.pgd_variant existed the default was a random start and steps of 2.5ε/k.
    saved['eval.pgd_variant'] = 'madry' if saved['eval.pgd_random_start'] else 'no_random_start'
  config = dict(_defaults())
  config.update({k: v for k, v in saved.items() if k in config})
  if config['model.spatial_init'] != 'smooth':
    config['model.smooth_sigma'] = 0.0  # plain random filters: no smoothing
  if not config['adversarial_training.enabled']:
    config['adversarial_training.epsilon'] = 0.0
  return config


# The eval.* settings say how the attacked evaluation (eval.json) ran; a cell's clean metrics
# (results.json) are on the whole test split whatever they are, so its clean row carries the
# defaults and cells that differ only in how they were attacked compare as seeds when clean.
_CLEAN_EVAL = {k: v for k, v in _defaults().items() if k.startswith('eval.')}


def load_cells(workdir):
  """One row per finished cell (its flat config, metrics, step and wall time), plus one per
  (attack, ε) of an attacked cell."""
  rows = []
  for name in sorted(os.listdir(workdir)):
    celldir = os.path.join(workdir, name)
    results = read_json(os.path.join(celldir, 'results.json'))
    if results is None:
      continue
    config = cell_config(read_json(os.path.join(celldir, 'config.json')), results)
    # frozen_unchanged: whether the run's frozen collections still held their initial values
    # when it was evaluated (True), did not (False), or could not be checked (None).
    row = {**config, **_CLEAN_EVAL, 'cell': name, 'step': results.get('step'),
           'wall_time_s': results.get('wall_time_s'),
           'frozen_unchanged': results.get('frozen_unchanged')}
    for metric in ('test_accuracy', 'test_psnr', 'scrambled_psnr'):
      if metric in results:
        row[metric] = results[metric]
    rows.append(row)
    evaluated = read_json(os.path.join(celldir, 'eval.json')) or {}
    for attack, per_eps in evaluated.get('robustness', {}).items():
      for eps, accuracy in per_eps.items():
        rows.append({**row, **{k: config[k] for k in _CLEAN_EVAL}, 'attack': attack,
                     'epsilon': float(eps), 'attacked_accuracy': accuracy})
  return rows


def short(field):
  """A field's name in tables and legends: 'model.width' -> 'width',
  'adversarial_training.enabled' -> 'adv_enabled'."""
  if field.startswith('model.'):
    return field[len('model.'):]
  if field.startswith('adversarial_training.'):
    return 'adv_' + field[len('adversarial_training.'):]
  return field


def varying(rows, exclude=()):
  """The config (and attack) fields whose value differs between `rows`, seed and bookkeeping
  excluded: what tells their experiments apart."""
  keys = {k for r in rows for k in r if k not in METRICS and k not in RECORD_FIELDS}
  skip = set(exclude) | set(BOOKKEEPING_FIELDS)
  return sorted(k for k in keys if k not in skip and len({repr(r.get(k)) for r in rows}) > 1)


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


def value_label(field, value):
  """One field's value in a line's name; the adversarial-training fields read as the training
  they describe instead of 'adv_enabled=False, adv_epsilon=0.0'."""
  if field == 'adversarial_training.epsilon':
    return f'FGSM-trained at {value:g}/255' if value else 'standard training'
  if field == 'adversarial_training.enabled':
    return 'FGSM-trained' if value else 'standard training'
  return f'{short(field)}={value}'


def line_label(series_fields, key):
  """A line's name in legends and tables."""
  named = dict(zip(series_fields, key))
  if 'adversarial_training.epsilon' in named:
    # ε is 0 exactly when adversarial training is off (cell_config), so ε alone names both.
    named.pop('adversarial_training.enabled', None)
  return ', '.join(value_label(f, v) for f, v in named.items()) or 'all'


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
  write_csv(os.path.join(out, f'{name}.csv'),
            [short(f) for f in series + [x]] + [f'{metric}_mean', f'{metric}_std', 'n'],
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
  elif short(x) in ('width', 'depth') and min(xs) > 0 and max(xs) / min(xs) >= 8:
    ax.set_xscale('log', base=2)
  ax.set_xlabel(short(x))
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
  return (f'## {title}\n\n{ylabel} (mean ± std over seeds), x = {short(x)}.\n\n'
          f'![{name}]({prefix}{name}.png)\n\n' + '\n'.join(table)
          + f'\n\nData: [{name}.csv]({prefix}{name}.csv)\n')
