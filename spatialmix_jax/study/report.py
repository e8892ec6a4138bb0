"""Tables and figures of a finished (or partly finished) sweep: WORKDIR/report/.

  python -m spatialmix_jax.study.report --workdir=/tmp/sweep [--figures=fig5_convmixer_depth,...]

Reads every WORKDIR/<cell>/results.json (+ eval.json, config.json), groups cells that differ
only in their seed, and writes for every figure the cells allow (its x axis takes at least two
values among the cells it selects): NAME.png, NAME.csv (mean, std, n over seeds) and a
Markdown table in report.md. Lines of a figure are the other fields that vary among its cells
(mode, width, ...). `summary` (every cell group, all metrics) is always written.
"""

import math
import os

from spatialmix_jax.infra import errors
from spatialmix_jax.infra import plotting
from spatialmix_jax.study import records

# (name, title, which cells, x field, y metric, y label); a figure shows only the cells that
# have its metric, so the metric alone tells classification from un-shuffling cells.
FIGURES = (
    ('fig2_resnet_depth', 'Fig. 2: separable ResNet depth',
     lambda r: 'resnet' in r['model.name'], 'model.depth', 'test_accuracy', 'test accuracy'),
    ('fig3_filter_families', 'Fig. 3: families of spatial filters',
     lambda r: True, 'model.spatial_init', 'test_accuracy', 'test accuracy'),
    ('fig4_width', 'Fig. 4: width',
     lambda r: r['model.name'] == 'convmixer', 'model.width', 'test_accuracy',
     'test accuracy'),
    ('fig4_width_multiplier', 'Fig. 4: separable ResNet width',
     lambda r: 'resnet' in r['model.name'], 'model.width_multiplier', 'test_accuracy',
     'test accuracy'),
    ('fig5_convmixer_depth', 'Fig. 5: ConvMixer depth',
     lambda r: r['model.name'] == 'convmixer', 'model.depth', 'test_accuracy', 'test accuracy'),
    ('kernel_size', 'ConvMixer kernel size',
     lambda r: r['model.name'] == 'convmixer', 'model.kernel_size', 'test_accuracy',
     'test accuracy'),
    ('fig6_7_robustness', 'Figs. 6/7: accuracy under attack',
     lambda r: 'attack' in r, 'epsilon', 'attacked_accuracy', 'accuracy under attack'),
    ('smooth_strength', '§4.3.3: smoothed random filters (σ = 0: plain random)',
     lambda r: 'attack' in r, 'model.smooth_sigma', 'attacked_accuracy',
     'accuracy under attack'),
    ('fig10_unshuffle_width', 'Figs. 10/B.4/B.5: un-shuffling PSNR vs width',
     lambda r: True, 'model.width', 'test_psnr', 'test PSNR (dB)'),
    ('fig10_unshuffle_depth', 'Figs. 10/B.4/B.5: un-shuffling PSNR vs depth',
     lambda r: True, 'model.depth', 'test_psnr', 'test PSNR (dB)'),
    ('fig10_unshuffle_kernel', 'Fig. 10: un-shuffling PSNR vs kernel size',
     lambda r: True, 'model.kernel_size', 'test_psnr', 'test PSNR (dB)'),
)
FIGURE_NAMES = tuple(f[0] for f in FIGURES)
FIGURE_NAMES = tuple(f[0] for f in FIGURES)


def summary(rows, out):
  """Every group of cells that differ only in seed, with all metrics (CSV + Markdown)."""
  plain = [r for r in rows if 'attack' not in r]
  keys = records.varying(plain, exclude=records.ATTACK_FIELDS) or ['mode']
  metrics = [m for m in records.METRICS if any(m in r for r in plain)]
  stats = {m: records.group(plain, keys, m) for m in metrics}
  groups = sorted({k for s in stats.values() for k in s},
                  key=lambda k: [records.sort_key(v) for v in k])
  header = [records.short(k) for k in keys] + [f'{m}_{s}' for m in metrics
                                               for s in ('mean', 'std')] + ['n']
  lines = []
  for key in groups:
    line = list(key)
    n = 0
    for m in metrics:
      mean, std, n_m = stats[m].get(key, (math.nan, math.nan, 0))
      line += [mean, std]
      n = max(n, n_m)
    lines.append(line + [n])
  records.write_csv(os.path.join(out, 'summary.csv'), header, lines)

  plt = plotting.pyplot()
  metric = metrics[0]
  fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(groups) + 2), 3.4))
  means = [stats[metric].get(k, (math.nan,))[0] for k in groups]
  stds = [stats[metric].get(k, (0, 0.0))[1] for k in groups]
  ax.bar(range(len(groups)), means, yerr=stds, capsize=3, color='tab:blue')
  ax.set_xticks(range(len(groups)), ['\n'.join(map(str, k)) for k in groups], fontsize=7)
  ax.set_ylabel(metric)
  ax.set_title(' / '.join(records.short(k) for k in keys), fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(out, 'summary.png'), dpi=120)
  plt.close(fig)

  table = ['| ' + ' | '.join([records.short(k) for k in keys] + metrics + ['seeds']) + ' |',
           '|' + '---|' * (len(keys) + len(metrics) + 1)]
  for key in groups:
    cells = [records.fmt(*stats[m][key], m) if key in stats[m] else '—' for m in metrics]
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
      raise errors.ConfigError(f'Unknown figure(s) {unknown}; choose from {FIGURE_NAMES}.')
  if not os.path.isdir(workdir):
    raise errors.NoResultsError(f'No sweep in {workdir!r}: run python -m '
                                'spatialmix_jax.study.sweep first.')
  rows = records.load_cells(workdir)
  if not rows:
    raise errors.NoResultsError(f'No finished cell (results.json) under {workdir!r} yet.')
  out = os.path.join(workdir, 'report')
  os.makedirs(out, exist_ok=True)
  sweep = records.read_json(os.path.join(workdir, 'sweep.json')) or {}
  sections, written = [], []
  for name, title, select, x, metric, ylabel in FIGURES:
    if figures and name not in figures:
      continue
    # Attacked rows repeat their cell's clean metrics: only attack figures may read them.
    pool = rows if metric == 'attacked_accuracy' else [r for r in rows if 'attack' not in r]
    section = records.figure([r for r in pool if select(r)], out, name, title, x, metric,
                             ylabel)
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
  from spatialmix_jax.config import cli  # pylint: disable=g-import-not-at-top
  with cli.user_errors_as_one_line():
    figures = [f for f in FLAGS.figures.split(',') if f] if FLAGS.figures else None
    written = write_report(FLAGS.workdir, figures)
  print(f'Wrote {", ".join(written)} to {os.path.join(FLAGS.workdir, "report")}')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'The sweep folder (python -m spatialmix_jax.study.sweep).')
  flags.DEFINE_string('figures', '', f'Comma-separated subset of {FIGURE_NAMES}.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
