"""The reproduction report: each of the paper's claims, on the architecture of the figure that
makes it, next to what our grids measured, with a verdict that accounts for seed noise.

  python -m spatialmix_jax.study.reproduction --workdir=docs/results --output=docs/reproduction.md \
      --readme=README.md

WORKDIR holds the grids of configs/sweeps/paper_cifar10.py (the paper's figures on its own
architectures) and of configs/sweeps/repro_cifar10.py (the earlier ConvMixer grids), one folder
per grid (`paper_cifar10/fig6_modes`, ...), filled by the sweep runner; only their JSON records
are needed. Figures and CSVs go to a folder named after OUTPUT's stem; WORKDIR/discussion.md,
written by hand, is appended as it is. The claims are `claims.py`'s table, the cells each
compares `verdicts.py`'s and the tests `significance.py`'s, so the same records give the same
document and new records can overturn a verdict; a grid that has not run yet turns its claims
into "not measured", and a cell whose frozen weights changed is flagged wherever it is read.
With --readme, the claims table between the README's `<!-- claims -->` and `<!-- /claims -->`
lines is rewritten from the same verdicts.
"""

import os
import sys

from spatialmix_jax.infra import errors
from spatialmix_jax.modeling import presets
from spatialmix_jax.study import claims as claims_table
from spatialmix_jax.study import curves
from spatialmix_jax.study import records
from spatialmix_jax.study import reproduced_figures
from spatialmix_jax.study import significance
from spatialmix_jax.study import spectral
from spatialmix_jax.study import strong_attack_report
from spatialmix_jax.study import verdicts

SPECTRAL_FAMILIES = (('random', {}), ('same', {}), ('box', {}), ('identity', {}),
                     ('smooth σ=1', {'spatial_init': 'smooth', 'smooth_sigma': 1.0}),
                     ('smooth σ=2', {'spatial_init': 'smooth', 'smooth_sigma': 2.0}))


def load(workdir):
  """{grid folder: rows of records.load_cells, each with its `grid`}; [] for a grid with no
  finished cell."""
  rows = {}
  for folder in claims_table.GRIDS:
    path = os.path.join(workdir, folder)
    rows[folder] = [{**r, 'grid': folder} for r in records.load_cells(path)] if os.path.isdir(
        path) else []
  return rows


def _setup(rows):
  """One line: the model, budget, optimiser, augmentation and attack of a grid's first cell
  (its attacked rows carry the attack settings, when it has any)."""
  c = next((r for r in rows if 'attack' in r), rows[0])
  if 'resnet' in c['model.name']:
    model = f'{c["model.name"]}-{c["model.depth"]}, d = {c["model.depth_multiplier"]}'
  else:
    model = (f'{c["model.name"]} width {c["model.width"]}, depth {c["model.depth"]}, kernel '
             f'{c["model.kernel_size"]}, patch {c["model.patch_size"]}')
  steps = (f'{c["num_train_steps"]} steps' if c['num_train_steps'] > 0
           else f'{c["num_epochs"]} epochs')
  augment = [name for name, on in (('flip', c['augment.flip']),
                                   (f'crop pad {c["augment.crop_padding"]}',
                                    c['augment.crop_padding'])) if on] or ['none']
  line = (f'{c["dataset"]}: {model}; {steps} × batch {c["batch_size"]}, '
          f'{c["optimizer.name"]} lr {c["optimizer.learning_rate"]:g}; '
          f'{", ".join(augment)}; {c["dtype"]}')
  if c['adversarial_training.enabled']:
    line += f'; trained on FGSM images (ε = {c["adversarial_training.epsilon"]:g}/255)'
  if c['eval.attacks']:
    line += (f'; FGSM/PGD-{c["eval.pgd_steps"]} ({c["eval.pgd_variant"]}) at ε = '
             f'{c["eval.epsilons"]} /255 on {c["eval.max_examples"]} test images')
  return line


def setup_and_cost(workdir, rows):
  lines = ['| grid | cells | setup | train wall time | eval wall time |', '|---|---|---|---|---|']
  commands = []
  for folder, grid_rows in rows.items():
    if not grid_rows:
      continue
    cells = sorted({r['cell'] for r in grid_rows})
    sweep = records.read_json(os.path.join(workdir, folder, 'sweep.json')) or {}
    train = sum(r['wall_time_s'] for r in verdicts.plain(grid_rows))
    evals = [records.read_json(os.path.join(workdir, folder, c, 'eval.json')) for c in cells]
    evaluated = f'{sum(e["wall_time_s"] for e in evals if e) / 60:.1f} min' if any(
        evals) else '—'
    lines.append(f'| {folder} | {len(cells)}/{len(sweep.get("cells", {})) or len(cells)} | '
                 f'{_setup(grid_rows)} | {train / 60:.1f} min | {evaluated} |')
    config, variant = folder.split('/')
    data_dir = ('' if grid_rows[0]['dataset'] == 'digits'
                else ' \\\n    --config.base.data_dir=../shared/tensorflow_datasets')
    commands.append(f'python -m spatialmix_jax.study.sweep --config=configs/sweeps/{config}.py:'
                    f'{variant} \\\n    --workdir={os.path.join(workdir, folder)}{data_dir}')
  return lines, commands


def spectral_section(rows, out, prefix):
  """Coverage of every frozen-filter family at the ConvMixer grid's width and kernel size."""
  cell = rows['repro_cifar10/convmixer_modes'][0]
  width, k = cell['model.width'], cell['model.kernel_size']
  banks = {name: spectral.random_bank(width, k, seed=0, **{'spatial_init': name, **kwargs})
           for name, kwargs in SPECTRAL_FAMILIES}
  analysed = spectral.analyse_banks(banks)
  spectral.plot_envelopes(analysed, os.path.join(out, 'spectral_envelopes.png'),
                          f'Envelopes of {width} frozen {k}x{k} filters, seed 0')
  coverages = {name: value for name, (_, value) in analysed.items()}
  section = (f'## Spectral coverage of the frozen filter banks\n\n'
             f'Envelope = max over the {width} filters of |FFT2| (zero-padded to '
             f'{spectral.DEFAULT_SIZE}×{spectral.DEFAULT_SIZE}, centred); coverage = share of '
             f'the plane where it reaches ≥ {spectral.DEFAULT_THRESHOLD:g} × its peak. Banks '
             'drawn as the models draw them (seed 0); computed when the report is written.\n\n'
             f'![spectral_envelopes]({prefix}spectral_envelopes.png)\n\n'
             '| family | ' + ' | '.join(coverages) + ' |\n|' + '---|' * (len(coverages) + 1)
             + '\n| coverage | ' + ' | '.join(f'{v:.3f}' for v in coverages.values()) + ' |\n')
  return section, coverages


# (file name, title, grids, x field, metric, which rows)
FIGURES = (
    ('fig2_modes', 'Fig. 2: Full / Chans / Space, separable ResNet-8 (4 epochs)',
     ('paper_cifar10/fig6_modes',), 'mode', 'test_accuracy', lambda r: True),
    ('fig3_families', 'Fig. 3: frozen filter families (Chans) beside Full, separable ResNet-8',
     ('paper_cifar10/fig6_modes', 'paper_cifar10/fig3_families'), 'model.spatial_init',
     'test_accuracy', lambda r: r['mode'] != 'space'),
    ('fig4_width', 'Fig. 4: Full and Chans against width, separable ResNet-8',
     ('paper_cifar10/fig4_width',), 'model.width_multiplier', 'test_accuracy', lambda r: True),
    ('fig6_fgsm', 'Fig. 6: FGSM accuracy vs ε, separable ResNet-8, plain and FGSM-trained',
     ('paper_cifar10/fig6_modes', 'paper_cifar10/fig6_adversarial'), 'epsilon',
     'attacked_accuracy', lambda r: r.get('attack') == 'fgsm'),
    ('fig6_pgd', 'Fig. 6: PGD-2 accuracy vs ε, separable ResNet-8, plain and FGSM-trained',
     ('paper_cifar10/fig6_modes', 'paper_cifar10/fig6_adversarial'), 'epsilon',
     'attacked_accuracy', lambda r: r.get('attack') == 'pgd'),
    ('fig5_paper_modes',
     'Fig. 5: Full / Chans / Space, the paper\'s CIFAR ConvMixer-128 k8 p1 at depth 4 (1 epoch)',
     ('paper_cifar10/fig5_convmixer',), 'mode', 'test_accuracy', lambda r: True),
    ('fig7_paper_fgsm', 'Fig. 7: Chans FGSM accuracy vs ε, plain and smoothed filters, '
     'ConvMixer-128/4 k8 p1',
     ('paper_cifar10/fig5_convmixer', 'paper_cifar10/fig7_smooth'),
     'epsilon', 'attacked_accuracy', lambda r: r.get('attack') == 'fgsm' and r['mode'] == 'chans'),
    ('fig7_paper_clean', 'Fig. 7: Chans clean accuracy vs smoothing σ (σ = 0: plain), '
     'ConvMixer-128/4 k8 p1',
     ('paper_cifar10/fig5_convmixer', 'paper_cifar10/fig7_smooth'),
     'model.smooth_sigma', 'test_accuracy', lambda r: r['mode'] == 'chans'),
    ('fig5_convmixer_modes',
     'Fig. 5: Full / Chans / Space, ConvMixer-128/4 k5 p2 (not the paper\'s size)',
     ('repro_cifar10/convmixer_modes',), 'mode', 'test_accuracy', lambda r: True),
    ('fig7_fgsm', 'Fig. 7: Chans FGSM accuracy vs ε, plain and smoothed filters',
     ('repro_cifar10/convmixer_modes', 'repro_cifar10/smooth'),
     'epsilon', 'attacked_accuracy', lambda r: r.get('attack') == 'fgsm' and r['mode'] == 'chans'),
    ('fig7_clean', 'Fig. 7: Chans clean accuracy vs smoothing σ (σ = 0: plain)',
     ('repro_cifar10/convmixer_modes', 'repro_cifar10/smooth'),
     'model.smooth_sigma', 'test_accuracy', lambda r: r['mode'] == 'chans'),
    ('convmixer_long_fgsm', 'FGSM accuracy vs ε, ConvMixer-128/4 k5 p2, 1,560 steps',
     ('repro_cifar10/robustness_long',), 'epsilon',
     'attacked_accuracy', lambda r: r.get('attack') == 'fgsm'),
    ('convmixer_adversarial_fgsm', 'FGSM accuracy vs ε, ConvMixer-128/4 k5 p2, plain and '
     'FGSM-trained',
     ('repro_cifar10/convmixer_modes', 'repro_cifar10/adversarial'), 'epsilon',
     'attacked_accuracy', lambda r: r.get('attack') == 'fgsm' and r['mode'] != 'space'
     and r['model.spatial_init'] == 'random'),
    ('unshuffle_cifar10', 'Fig. 10 (CIFAR-10): un-shuffling PSNR by mode (dashed: scrambled input)',
     ('repro_cifar10/unshuffle',), 'mode', 'test_psnr', lambda r: True),
    ('unshuffle_digits', 'Fig. 10, digits stand-in (width 128, depth 8): un-shuffling PSNR by mode',
     ('repro_cifar10/unshuffle_digits',), 'mode', 'test_psnr', lambda r: True),
    ('fig10_kernel', 'Fig. 10, digits stand-in for CIFAR-10: un-shuffling PSNR vs kernel size',
     ('paper_cifar10/fig10_kernel',), 'model.kernel_size', 'test_psnr', lambda r: True),
    ('fig10_depth', 'Fig. 10, digits stand-in for CIFAR-10: un-shuffling PSNR vs depth',
     ('paper_cifar10/fig10_depth',), 'model.depth', 'test_psnr', lambda r: True),
    ('fig10_width', 'Fig. 10, digits stand-in for CIFAR-10: un-shuffling PSNR vs width',
     ('paper_cifar10/fig10_width',), 'model.width', 'test_psnr', lambda r: True),
)


def _figures(rows, out, prefix):
  sections = []
  for name, title, grids, x, metric, select in FIGURES:
    selected = [r for grid in grids for r in rows[grid] if select(r)]
    if metric != 'attacked_accuracy':
      selected = verdicts.plain(selected)
    ylabel = {'test_accuracy': 'test accuracy', 'attacked_accuracy': 'accuracy under attack',
              'test_psnr': 'test PSNR (dB)'}[metric]
    section = records.figure(selected, out, name, title, x, metric, ylabel, prefix)
    if section:
      sections.append(section)
  return sections


def budget_section(workdir, out, prefix):
  """The budget curve of the Fig. 2 and Fig. 6 gaps (`curves.py`) when its grid has cells with
  both modes; [] otherwise."""
  folder = os.path.join(workdir, 'paper_cifar10', 'budget_curve')
  gaps = curves.gap_table(curves.load(folder)) if os.path.isdir(folder) else []
  if not gaps:
    return []
  curves.figure(gaps, os.path.join(out, 'budget_curve.png'))
  return ['## Budget curve: the Fig. 2 and Fig. 6 gaps against training length', '',
          f'paper_cifar10/budget_curve: the fig6_modes ResNet-8 in full and chans, '
          f'{curves.LABEL}.', '', f'![budget_curve]({prefix}budget_curve.png)', '',
          curves.markdown(gaps)]


def rule_section():
  """How a verdict is read, with the constants the code uses."""
  return [
      '## How a verdict is read',
      '',
      f'Each comparison contrasts per-seed results of cells equal on every config field but '
      f'the one under test (seed and bookkeeping aside); cells that differ in anything else are '
      f'not compared. Tests are Welch\'s (unequal variances, Welch–Satterthwaite degrees of '
      f'freedom) at α = {significance.ALPHA:g}:',
      '',
      '- *difference* claims ("Chans is more robust"): two-sided Welch t-test, 95 % CI of Δ. '
      'Significant in the claimed direction: **agrees**; in the other: **disagrees**; not '
      'significant with the whole CI inside the margin: **did not replicate** (enough power, '
      'no effect of the margin\'s size); otherwise **inconclusive**.',
      '- *near-equality* claims ("nearly matches", "the gap is gone"): TOST equivalence test '
      'against ±margin, 90 % CI. Equivalence shown: **agrees**; Δ significantly beyond the '
      'margin: **disagrees**; otherwise **inconclusive**.',
      '- *no-worse* claims ("without hurting", "almost as well"): one-sided Welch t-test of '
      'Δ > −margin, 90 % CI; significantly below −margin: **disagrees**.',
      f'- Fewer than {verdicts.SEEDS} seeds in an arm ({verdicts.HEADLINE_SEEDS} for the '
      'headline claims: Figs. 2/5 modes, Fig. 3 families, Fig. 6 robustness): '
      '**inconclusive** whatever the test says ("n < …"); the numbers are still shown.',
      '- **not measured**: no grid of ours has the cells.',
      '',
      f'Margins: ±{100 * verdicts.ACCURACY_MARGIN:g} accuracy points (clean or under attack), '
      f'about the seed-to-seed spread of a cell here; ±{verdicts.PSNR_MARGIN:g} dB of PSNR, a '
      '12 % change of the mean squared error; "almost as well" at un-shuffling is Chans '
      f'keeping ≥ {100 * verdicts.UNSHUFFLE_SHARE:.0f} % of Full\'s PSNR gain over the scrambled '
      'input, tested as Chans − scrambled − '
      f'{verdicts.UNSHUFFLE_SHARE:g} × (Full − scrambled) > 0. A claim made of several '
      'comparisons reads the first of *disagrees*, *did not replicate*, *not measured*, '
      '*inconclusive* that any comparison reads, and *agrees* only when all do.',
      '',
  ]


def models_section():
  """The paper's models as the preset table has them, and what in them is our assumption."""
  lines = ['## The paper\'s models, and what is assumed', '']
  for name, preset in presets.PRESETS.items():
    if preset.assumed:
      lines.append(f'- `{name}` ({preset.source}): {preset.describe()}; the paper does not '
                   f'state the {", ".join(preset.assumed)}, so ours is an assumption.')
  return lines + ['', 'Rows on a ConvMixer of another size, on another architecture than the '
                  'figure\'s, or on the 8×8 digits standing in for CIFAR-10 say so in their '
                  'architecture column.', '']


def write(workdir, output):
  """Writes OUTPUT (Markdown) and its figures; returns the claims with their verdicts."""
  if not os.path.isdir(workdir):
    raise errors.NoResultsError(f'No reproduction results in {workdir!r}: run the grids of '
                     'configs/sweeps/paper_cifar10.py and repro_cifar10.py first.')
  rows = load(workdir)
  if not rows['repro_cifar10/convmixer_modes']:
    raise errors.NoResultsError(f'{workdir!r} has no finished repro_cifar10/convmixer_modes cell: run '
                     'python -m spatialmix_jax.study.sweep --config=configs/sweeps/repro_cifar10.py:'
                     'convmixer_modes --workdir='
                     f'{os.path.join(workdir, "repro_cifar10", "convmixer_modes")} first.')
  stem = os.path.splitext(os.path.basename(output))[0]
  out = os.path.join(os.path.dirname(os.path.abspath(output)), stem)
  os.makedirs(out, exist_ok=True)
  for name in os.listdir(out):  # a figure the records no longer allow must not linger
    if name.endswith(('.png', '.csv')):
      os.remove(os.path.join(out, name))
  prefix = f'{stem}/'
  spectral_md, coverages = spectral_section(rows, out, prefix)
  fig6 = os.path.join(workdir, 'paper_cifar10', 'fig6_modes')
  strong = strong_attack_report.load(fig6) if os.path.isdir(fig6) else {}
  claims = claims_table.read(rows, coverages, strong)
  table = ['| # | figure | claim | architecture | grid | budget | test | seeds | measured | '
           'verdict |', '|---|---|---|---|---|---|---|---|---|---|']
  for index, c in enumerate(claims, 1):
    table.append(_row([index] + [c[k] for k in ('figure', 'claim', 'architecture', 'grids',
                                                'budget', 'test', 'seeds', 'measured')]
                      + [claims_table.verdict_cell(c)]))
  setup, commands = setup_and_cost(workdir, rows)
  document = [
      '# Reproduction on real CIFAR-10 (and digits), CPU budget',
      '',
      f'Generated by `python -m spatialmix_jax.study.reproduction --workdir={workdir} '
      f'--output={output}` from the per-cell `results.json` / `eval.json` / `config.json` '
      f'records committed under `{workdir}/`; rerunning it rewrites this file and the figures '
      f'in `{prefix}` from the same records. The discussion at the end is written by hand.',
      '',
      'CIFAR-10 here is the TFDS `cifar10/3.0.2` prepared from a JPEG copy of the dataset, so '
      'its pixels differ slightly from the original; clean accuracies are on its 10,000 test '
      'images (attacks: on a subset, see the setup table). Budgets are far below the paper\'s '
      '(epochs, not hundreds of them): the claims under test are orderings, not the paper\'s '
      'accuracies. Each claim is tested on the architecture of the figure that makes it where a '
      'grid of ours has it; rows on another architecture say so.',
      '',
      *claims_table.integrity_section(rows, claims),
      *rule_section(),
      *models_section(),
      '## Claims, side by side',
      '',
      'One row per claim and grid; a figure that makes two claims has a row for each. The '
      'measured column gives, per comparison, the means ± std over seeds, Δ, its interval, the '
      'p-value the verdict rests on, the seeds per arm and that comparison\'s verdict (pp: '
      'accuracy points).',
      '',
      *table,
      '',
      '## Grids, setup and cost',
      '',
      *setup,
      '',
      'Each grid is one resumable command (finished cells are skipped):',
      '',
      '```sh',
      '\n'.join(commands),
      '```',
      '',
      *_figures(rows, out, prefix),
      *budget_section(workdir, out, prefix),
      spectral_md,
      *reproduced_figures.section(workdir),
  ]
  discussion = os.path.join(workdir, 'discussion.md')
  if os.path.exists(discussion):
    with open(discussion) as f:
      document.append(f.read().rstrip() + '\n')
  with open(output, 'w') as f:
    f.write('\n'.join(document))
  return claims


README_BEGIN, README_END = '<!-- claims -->', '<!-- /claims -->'


def readme_table(claims):
  """The README's form of the claims table: the report's, without the grid and row number."""
  lines = ['| figure | claim | architecture | budget | test | seeds | measured | verdict |',
           '|---|---|---|---|---|---|---|---|']
  for c in claims:
    lines.append(_row([c[k] for k in ('figure', 'claim', 'architecture', 'budget', 'test',
                                      'seeds', 'measured')] + [claims_table.verdict_cell(c)]))
  return lines


def _row(cells):
  """A Markdown table row; a '|' inside a cell would end it early."""
  return '| ' + ' | '.join(str(c).replace('|', '\\|') for c in cells) + ' |'


def with_readme_table(text, claims):
  """TEXT (a README) with the lines between its claims markers replaced by readme_table."""
  lines = text.split('\n')
  if README_BEGIN not in lines or README_END not in lines:
    raise errors.ConfigError(f'The README has no {README_BEGIN} ... {README_END} lines around its '
                     'claims table: add them where the table goes.')
  begin, end = lines.index(README_BEGIN), lines.index(README_END)
  return '\n'.join(lines[:begin + 1] + readme_table(claims) + lines[end:])


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  output = FLAGS.output or os.path.join(FLAGS.workdir, 'reproduction.md')
  try:
    if FLAGS.readme:
      with open(FLAGS.readme) as f:
        readme = f.read()
      with_readme_table(readme, [])  # a README without markers fails before any work
    claims = write(FLAGS.workdir, output)
    if FLAGS.readme:
      with open(FLAGS.readme, 'w') as f:
        f.write(with_readme_table(readme, claims))
  except (errors.UserError, OSError) as e:  # OSError: a path the user named
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  for claim in claims:
    flag = ' [frozen weights changed in a cell it reads]' if claim['flagged'] else ''
    print(f'{claim["verdict"]:>17}: {claim["figure"]}, {claim["grids"]}: {claim["claim"]}{flag}')
  print(f'Wrote {output}')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'The folder of the reproduction grids: '
                      'paper_cifar10/<grid>/ and repro_cifar10/<grid>/.')
  flags.DEFINE_string('output', '', 'The Markdown file to write (default '
                      'WORKDIR/reproduction.md); figures go to a folder named after its stem.')
  flags.DEFINE_string('readme', '', 'A README whose claims table (between the '
                      f'{README_BEGIN} and {README_END} lines) is rewritten too.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
