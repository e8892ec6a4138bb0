"""The reproduction report: each of the paper's claims, on the architecture of the figure that
makes it, next to what our grids measured, with a verdict that accounts for seed noise.

  python -m spatialmix_jax.study.reproduction --workdir=docs/results --output=docs/reproduction.md \
      --readme=README.md

WORKDIR holds the grids of configs/sweeps/paper_cifar10.py (the paper's figures on its own
architectures) and of configs/sweeps/repro_cifar10.py (the earlier ConvMixer grids), one folder
per grid (`paper_cifar10/fig6_modes`, ...), filled by the sweep runner; only their JSON records
are needed. Figures and CSVs go to a folder named after OUTPUT's stem; WORKDIR/discussion.md,
written by hand, is appended as it is. Verdicts are computed by `verdicts.py`'s rule, so the
same records give the same document and new records can overturn a verdict; a grid that has
not run yet turns its claims into "not measured". With --readme, the claims table between the
README's `<!-- claims -->` and `<!-- /claims -->` lines is rewritten from the same verdicts.
"""

import dataclasses
import os
import sys

from spatialmix_jax.study import records
from spatialmix_jax.study import spectral
from spatialmix_jax.study import verdicts

PAPER_RESNET = 'separable pre-act ResNet (CIFAR form, d = 9)'
OUR_CONVMIXER = 'ConvMixer-128/4, k5, p2'


@dataclasses.dataclass(frozen=True)
class Grid:
  folder: str  # under WORKDIR, and the sweep config's variant after the colon
  architecture: str
  paper: bool  # the paper's own architecture for the claims this grid tests


GRIDS = {g.folder: g for g in (
    Grid('paper_cifar10/fig6_modes', 'separable pre-act ResNet-8, d = 9, 4 epochs', True),
    Grid('paper_cifar10/fig6_adversarial', 'separable pre-act ResNet-8, d = 9, 4 epochs, '
         'FGSM-trained', True),
    Grid('paper_cifar10/fig3_families', 'separable pre-act ResNet-8, d = 9, 4 epochs', True),
    Grid('paper_cifar10/fig4_width', 'separable pre-act ResNet-8, d = 9, 2 epochs', True),
    Grid('paper_cifar10/fig10_kernel', 'un-shuffling ConvMixer (patch 1, linear head), digits',
         True),
    Grid('paper_cifar10/fig10_depth', 'un-shuffling ConvMixer (patch 1, linear head), digits',
         True),
    Grid('paper_cifar10/fig10_width', 'un-shuffling ConvMixer (patch 1, linear head), digits',
         True),
    Grid('repro_cifar10/convmixer_modes', OUR_CONVMIXER + ', 300 steps', False),
    # ResNet-14 is the paper's CIFAR family (6n + 2, n = 2): same architecture, shorter budget.
    Grid('repro_cifar10/resnet_modes', 'separable pre-act ResNet-14, d = 9, 300 steps', True),
    Grid('repro_cifar10/families', OUR_CONVMIXER + ' (d = 1), 300 steps', False),
    Grid('repro_cifar10/smooth', OUR_CONVMIXER + ', 300 steps', False),
    Grid('repro_cifar10/robustness_long', OUR_CONVMIXER + ', 1,560 steps', False),
    Grid('repro_cifar10/adversarial', OUR_CONVMIXER + ', 300 steps, FGSM-trained', False),
    Grid('repro_cifar10/unshuffle', 'un-shuffling ConvMixer-128/4 k9, CIFAR-10, 300 steps',
         True),
    Grid('repro_cifar10/unshuffle_digits', 'un-shuffling ConvMixer-128/8 k5, digits', True),
)}
SPECTRAL_FAMILIES = (('random', {}), ('same', {}), ('box', {}), ('identity', {}),
                     ('smooth σ=1', {'spatial_init': 'smooth', 'smooth_sigma': 1.0}),
                     ('smooth σ=2', {'spatial_init': 'smooth', 'smooth_sigma': 2.0}))


def load(workdir):
  """{grid folder: rows of records.load_cells}; [] for a grid with no finished cell."""
  rows = {}
  for folder in GRIDS:
    path = os.path.join(workdir, folder)
    rows[folder] = records.load_cells(path) if os.path.isdir(path) else []
  return rows


def _claims(rows, coverages):
  """(figure, claim, grids, result) rows of the claims table, in the paper's order."""
  g = rows
  modes_claim = 'Chans (frozen spatial filters) nearly matches Full; Space lags far behind.'
  families_claim = ('Frozen filters must be decorrelated random ones: "same" random kernels in '
                    'every channel, box and identity filters do much worse.')
  robust_claim = 'Chans models are more robust than Full to FGSM and PGD-2 at ε = 1/255.'
  adversarial_claim = 'FGSM adversarial training closes the robustness gap between Chans and Full.'
  smooth_claim = 'Low-pass smoothing the frozen random filters makes Chans more robust still.'
  share_claim = 'Pixel un-shuffling works almost as well with Chans as with Full'
  random_only = {'model__spatial_init': 'random'}
  fig6 = g['paper_cifar10/fig6_modes']
  convmixer = g['repro_cifar10/convmixer_modes']
  return [
      ('Fig. 2', modes_claim, ('paper_cifar10/fig6_modes',), verdicts.modes(fig6)),
      ('Fig. 5', modes_claim, ('repro_cifar10/convmixer_modes',), verdicts.modes(convmixer)),
      ('Fig. 2', modes_claim, ('repro_cifar10/resnet_modes',),
       verdicts.modes(g['repro_cifar10/resnet_modes'])),
      ('Fig. 3', families_claim, ('paper_cifar10/fig6_modes', 'paper_cifar10/fig3_families'),
       verdicts.families(fig6 + g['paper_cifar10/fig3_families'])),
      ('Fig. 3', families_claim, ('repro_cifar10/convmixer_modes', 'repro_cifar10/families'),
       verdicts.families(convmixer + g['repro_cifar10/families'])),
      ('§3.1', 'Random filter banks cover the spectrum widely (envelope: the largest FFT '
       'magnitude of any filter, at 512×512).', (), verdicts.spectral(coverages)),
      ('Fig. 4', 'The gap between Chans and Full closes as width grows.',
       ('paper_cifar10/fig4_width',), verdicts.width(g['paper_cifar10/fig4_width'])),
      ('Fig. 6', robust_claim, ('paper_cifar10/fig6_modes',), verdicts.robustness(fig6)),
      ('Fig. 6', robust_claim, ('repro_cifar10/convmixer_modes',),
       verdicts.robustness(convmixer, random_only)),
      ('Fig. 6', robust_claim, ('repro_cifar10/robustness_long',),
       verdicts.robustness(g['repro_cifar10/robustness_long'], random_only)),
      ('Fig. 6', adversarial_claim, ('paper_cifar10/fig6_modes', 'paper_cifar10/fig6_adversarial'),
       verdicts.adversarial(fig6, g['paper_cifar10/fig6_adversarial'])),
      ('Fig. 6', adversarial_claim, ('repro_cifar10/convmixer_modes', 'repro_cifar10/adversarial'),
       verdicts.adversarial(convmixer, g['repro_cifar10/adversarial'], random_only)),
      ('Fig. 7', smooth_claim, ('repro_cifar10/convmixer_modes', 'repro_cifar10/smooth'),
       verdicts.smoothing(convmixer + g['repro_cifar10/smooth'])),
      ('Fig. 7', smooth_claim, ('repro_cifar10/robustness_long',),
       verdicts.smoothing(g['repro_cifar10/robustness_long'])),
      ('Fig. 10', share_claim + ' (digits; width 64, depth 4, kernel 5).',
       ('paper_cifar10/fig10_width',),
       verdicts.unshuffle_share([r for r in g['paper_cifar10/fig10_width']
                                 if r['model.width'] == 64])),
      ('Fig. 10', 'Un-shuffling PSNR grows with kernel size in Chans, though its parameter '
       'count does not.', ('paper_cifar10/fig10_kernel',),
       verdicts.unshuffle_growth(g['paper_cifar10/fig10_kernel'])),
      ('Fig. B.2', share_claim + ' (CIFAR-10).', ('repro_cifar10/unshuffle',),
       verdicts.unshuffle_share(g['repro_cifar10/unshuffle'])),
      ('Fig. 10', share_claim + ' (digits; width 128, depth 8).',
       ('repro_cifar10/unshuffle_digits',),
       verdicts.unshuffle_share(g['repro_cifar10/unshuffle_digits'])),
      ('Figs. 2, 4, 5', 'The same holds on ImageNet (ConvMixer-512/k8/p7, separable ResNets '
       '8n+2).', (), verdicts.not_measured('no ImageNet and no accelerator here')),
  ]


def _architecture(grids):
  if not grids:
    return '—'
  grid = GRIDS[grids[-1]]
  return grid.architecture + ('' if grid.paper else ' — **not the paper\'s architecture for '
                              'this figure**')


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
    ('fig5_convmixer_modes', 'Fig. 5: Full / Chans / Space, ConvMixer-128/4 k5 p2',
     ('repro_cifar10/convmixer_modes',), 'mode', 'test_accuracy', lambda r: True),
    ('fig7_fgsm', 'Fig. 7: FGSM accuracy vs ε, Chans, plain and smoothed frozen filters',
     ('repro_cifar10/convmixer_modes', 'repro_cifar10/smooth'), 'epsilon',
     'attacked_accuracy', lambda r: r.get('attack') == 'fgsm' and r['mode'] == 'chans'),
    ('convmixer_long_fgsm', 'FGSM accuracy vs ε, ConvMixer-128/4 k5 p2, 1,560 steps',
     ('repro_cifar10/robustness_long',), 'epsilon',
     'attacked_accuracy', lambda r: r.get('attack') == 'fgsm'),
    ('convmixer_adversarial_fgsm', 'FGSM accuracy vs ε, ConvMixer-128/4 k5 p2, plain and '
     'FGSM-trained',
     ('repro_cifar10/convmixer_modes', 'repro_cifar10/adversarial'), 'epsilon',
     'attacked_accuracy', lambda r: r.get('attack') == 'fgsm' and r['mode'] != 'space'
     and r['model.spatial_init'] == 'random'),
    ('unshuffle_cifar10', 'Un-shuffling CIFAR-10: PSNR by mode (dashed: scrambled input)',
     ('repro_cifar10/unshuffle',), 'mode', 'test_psnr', lambda r: True),
    ('unshuffle_digits', 'Un-shuffling digits (width 128, depth 8): PSNR by mode',
     ('repro_cifar10/unshuffle_digits',), 'mode', 'test_psnr', lambda r: True),
    ('fig10_kernel', 'Fig. 10: un-shuffling PSNR vs kernel size (digits)',
     ('paper_cifar10/fig10_kernel',), 'model.kernel_size', 'test_psnr', lambda r: True),
    ('fig10_depth', 'Fig. 10: un-shuffling PSNR vs depth (digits)',
     ('paper_cifar10/fig10_depth',), 'model.depth', 'test_psnr', lambda r: True),
    ('fig10_width', 'Fig. 10: un-shuffling PSNR vs width (digits)',
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


def write(workdir, output):
  """Writes OUTPUT (Markdown) and its figures; returns the claims with their verdicts."""
  if not os.path.isdir(workdir):
    raise ValueError(f'No reproduction results in {workdir!r}: run the grids of '
                     'configs/sweeps/paper_cifar10.py and repro_cifar10.py first.')
  rows = load(workdir)
  if not rows['repro_cifar10/convmixer_modes']:
    raise ValueError(f'{workdir!r} has no finished repro_cifar10/convmixer_modes cell: run '
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
  claims = [{'figure': figure, 'claim': claim, 'grids': ', '.join(grids) or '—',
             'architecture': _architecture(grids), **result}
            for figure, claim, grids, result in _claims(rows, coverages)]
  table = ['| # | figure | claim | architecture | grid | measured | verdict |',
           '|---|---|---|---|---|---|---|']
  for index, c in enumerate(claims, 1):
    table.append(f'| {index} | {c["figure"]} | {c["claim"]} | {c["architecture"]} | '
                 f'{c["grids"]} | {c["measured"]} | **{c["verdict"]}** |')
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
      '## Claims, side by side',
      '',
      f'Verdict rule (every row but the spectral one): {verdicts.RULE}. A claim made of several '
      'comparisons agrees when all agree, disagrees when any disagrees, and is inconclusive '
      'otherwise. Δ and its pooled std s are in the measured column (pp: percentage points).',
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
      spectral_md,
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
  """The README's short form of the claims table: figure, architecture, measured, verdict."""
  lines = ['| figure | claim | architecture | measured | verdict |', '|---|---|---|---|---|']
  for c in claims:
    lines.append(f'| {c["figure"]} | {c["claim"]} | {c["architecture"]} | {c["measured"]} | '
                 f'**{c["verdict"]}** |')
  return lines


def with_readme_table(text, claims):
  """TEXT (a README) with the lines between its claims markers replaced by readme_table."""
  lines = text.split('\n')
  if README_BEGIN not in lines or README_END not in lines:
    raise ValueError(f'The README has no {README_BEGIN} ... {README_END} lines around its '
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
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  for claim in claims:
    print(f'{claim["verdict"]:>12}: {claim["figure"]}, {claim["grids"]}: {claim["claim"]}')
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
