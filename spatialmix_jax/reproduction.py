"""The reproduction report: each of the paper's claims next to what our grids measured.

  python -m spatialmix_jax.reproduction --workdir=docs/results/repro_cifar10 \
      --output=docs/reproduction.md

WORKDIR holds one folder per grid of configs/sweeps/repro_cifar10.py (convmixer_modes,
resnet_modes, families, smooth, unshuffle, unshuffle_digits), filled by the sweep runner; only
their JSON records are needed. Figures and CSVs go to a folder named after OUTPUT's stem
(docs/reproduction/). WORKDIR/discussion.md, written by hand, is appended as it is.

Every verdict is computed from the numbers by the rule printed beside it, so the same results
give the same document, and new results can overturn a verdict. A grid that has not run yet
turns its claims into "not measured" instead of failing.
"""

import os
import sys

from spatialmix_jax import records
from spatialmix_jax import spectral

GRID_CONFIG = 'configs/sweeps/repro_cifar10.py'
GRIDS = ('convmixer_modes', 'resnet_modes', 'families', 'smooth', 'robustness_long',
         'adversarial', 'unshuffle', 'unshuffle_digits')
ATTACK_NAMES = {'fgsm': 'FGSM', 'pgd': 'PGD-2'}
# ε (in 1/255) at which the paper states its robustness claims.
CLAIM_EPSILON = 1.0
# "Almost as well" for un-shuffling: Chans keeps at least this share of Full's PSNR gain.
UNSHUFFLE_SHARE = 0.8
SPECTRAL_FAMILIES = (('random', {}), ('same', {}), ('box', {}), ('identity', {}),
                     ('smooth σ=1', {'spatial_init': 'smooth', 'smooth_sigma': 1.0}),
                     ('smooth σ=2', {'spatial_init': 'smooth', 'smooth_sigma': 2.0}))


def _cell_dirs(workdir, grid):
  folder = os.path.join(workdir, grid)
  if not os.path.isdir(folder):
    return []
  return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
          if os.path.exists(os.path.join(folder, name, 'results.json'))]


def load(workdir):
  """{grid: rows of records.load_cells} for every grid; [] for a grid with no finished cell."""
  return {grid: records.load_cells(os.path.join(workdir, grid)) if _cell_dirs(workdir, grid)
          else [] for grid in GRIDS}


def _plain(rows):
  return [r for r in rows if 'attack' not in r]


def _by(rows, field, metric, **where):
  """{value of field: (mean, std, n)} of metric over the rows matching `where`."""
  rows = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
  return {key[0]: stats for key, stats in records.group(rows, [field], metric).items()}


def _acc(stats):
  mean, std, n = stats
  return f'{mean:.4f} ± {std:.4f}' if n > 1 else f'{mean:.4f}'


def _seeds(stats_by_key):
  counts = sorted({n for _, _, n in stats_by_key.values()})
  return '/'.join(map(str, counts)) + (' seed' if counts == [1] else ' seeds')


def _claim(claim, measured, verdict, rule):
  return {'claim': claim, 'measured': measured, 'verdict': verdict, 'rule': rule}


def _verdict(wins):
  return 'agrees' if all(wins) else 'partly' if any(wins) else 'disagrees'


def _not_measured(claim, why):
  return _claim(claim, why, 'not measured', '—')


def modes_claim(rows, model):
  claim = (f'{model}: Chans (frozen spatial filters) nearly matches Full; Space (frozen '
           'channel mixing) lags far behind.')
  acc = _by(_plain(rows), 'mode', 'test_accuracy')
  if not {'full', 'chans', 'space'} <= set(acc):
    return _not_measured(claim, 'grid not run')
  full, chans, space = (acc[m][0] for m in ('full', 'chans', 'space'))
  measured = (f'full {_acc(acc["full"])}, chans {_acc(acc["chans"])}, space '
              f'{_acc(acc["space"])} ({_seeds(acc)}); Chans {100 * (chans - full):+.1f} pp, '
              f'Space {100 * (space - full):+.1f} pp vs Full')
  agrees = chans > space and full - chans < full - space
  return _claim(claim, measured, 'agrees' if agrees else 'disagrees',
                'Chans beats Space and is closer to Full than Space is')


def families_claim(modes_rows, families_rows):
  claim = ('Frozen filters must be decorrelated random ones: "same" random kernels in every '
           'channel, box and identity filters do much worse.')
  acc = _by(_plain(modes_rows + families_rows), 'spatial_init', 'test_accuracy', mode='chans')
  if not {'random', 'same', 'box', 'identity'} <= set(acc):
    return _not_measured(claim, 'grid not run')
  others = ('same', 'box', 'identity')
  measured = ', '.join(f'{f} {_acc(acc[f])}' for f in ('random',) + others)
  agrees = all(acc['random'][0] > acc[f][0] for f in others)
  return _claim(claim, measured + ' (Chans)', 'agrees' if agrees else 'disagrees',
                'random beats each of same, box and identity')


def spectral_claim(coverages):
  claim = ('Random filter banks cover the spectrum widely (envelope: the largest FFT magnitude '
           'of any filter, at 512×512).')
  measured = ', '.join(f'{name} {value:.2f}' for name, value in coverages.items())
  agrees = all(coverages['random'] > coverages[f] for f in ('same', 'box'))
  return _claim(claim, f'coverage {measured}', 'agrees' if agrees else 'disagrees',
                'the random bank covers more of the plane than same and box (a delta filter is '
                'flat, so identity covers all of it by construction)')


def _attacked(rows, attack, epsilon, **where):
  selected = [r for r in rows if r.get('attack') == attack and r['epsilon'] == epsilon]
  return _by(selected, 'mode', 'attacked_accuracy', **where)


def _budget(rows):
  steps = sorted({r['step'] for r in rows if r.get('step') is not None})
  return f' after {"/".join(map(str, steps))} steps' if steps else ''


def robustness_claim(modes_rows):
  claim = f'Chans models are more robust than Full to FGSM and PGD-2 at ε = {CLAIM_EPSILON:g}/255.'
  parts, wins = [_budget(modes_rows).strip()], []
  for attack, label in ATTACK_NAMES.items():
    acc = _attacked(modes_rows, attack, CLAIM_EPSILON, spatial_init='random')
    if not {'full', 'chans'} <= set(acc):
      return _not_measured(claim, 'grid not run')
    parts.append(f'{label}: full {_acc(acc["full"])}, chans {_acc(acc["chans"])}')
    wins.append(acc['chans'][0] > acc['full'][0])
  return _claim(claim, '; '.join(parts), _verdict(wins),
                'Chans keeps more accuracy than Full under both attacks')


def smoothing_claim(modes_rows, smooth_rows):
  claim = 'Low-pass smoothing the frozen random filters makes Chans more robust still.'
  rows = [r for r in modes_rows + smooth_rows if 'attack' in r and r['mode'] == 'chans']
  parts, wins = [_budget(rows).strip()], []
  for attack, label in ATTACK_NAMES.items():
    selected = [r for r in rows if r['attack'] == attack and r['epsilon'] == CLAIM_EPSILON]
    acc = _by(selected, 'smooth_sigma', 'attacked_accuracy')
    sigmas = sorted(s for s in acc if s > 0)
    if 0.0 not in acc or not sigmas:
      return _not_measured(claim, 'grid not run')
    parts.append(f'{label}: plain {_acc(acc[0.0])}, '
                 + ', '.join(f'σ={s:g} {_acc(acc[s])}' for s in sigmas))
    wins += [acc[s][0] > acc[0.0][0] for s in sigmas]
  return _claim(claim, '; '.join(parts), _verdict(wins),
                'every smoothed bank keeps more accuracy than the plain random one, both attacks')


def adversarial_claim(modes_rows, adversarial_rows):
  claim = 'FGSM adversarial training closes the robustness gap between Chans and Full.'
  parts, wins = [], []
  for attack, label in ATTACK_NAMES.items():
    plain = _attacked(modes_rows, attack, CLAIM_EPSILON, spatial_init='random')
    trained = _attacked(adversarial_rows, attack, CLAIM_EPSILON)
    if not {'full', 'chans'} <= set(plain) & set(trained):
      return _not_measured(claim, 'grid not run')
    before = plain['chans'][0] - plain['full'][0]
    after = trained['chans'][0] - trained['full'][0]
    parts.append(f'{label}: Chans − Full {100 * before:+.1f} pp without, {100 * after:+.1f} pp '
                 f'with (full {_acc(trained["full"])}, chans {_acc(trained["chans"])})')
    wins.append(abs(after) < abs(before))
  return _claim(claim, '; '.join(parts), _verdict(wins),
                'the Chans − Full gap under attack is smaller with adversarial training, both '
                'attacks')


def unshuffle_claim(rows, dataset):
  claim = f'Pixel un-shuffling ({dataset}) works almost as well with Chans as with Full.'
  psnr = _by(_plain(rows), 'mode', 'test_psnr')
  scrambled = _by(_plain(rows), 'mode', 'scrambled_psnr')
  if not {'full', 'chans'} <= set(psnr):
    return _not_measured(claim, 'grid not run')
  base = scrambled['full'][0]
  share = (psnr['chans'][0] - base) / (psnr['full'][0] - base)
  measured = (f'PSNR full {psnr["full"][0]:.2f} dB, chans {psnr["chans"][0]:.2f} dB, scrambled '
              f'input {base:.2f} dB ({_seeds(psnr)}); Chans keeps {100 * share:.0f}% of the gain')
  return _claim(claim, measured, 'agrees' if share >= UNSHUFFLE_SHARE else 'disagrees',
                f'Chans keeps ≥ {100 * UNSHUFFLE_SHARE:.0f}% of Full\'s PSNR gain over the '
                'scrambled input')


NOT_RUN = (
    ('The gap between Chans and Full closes as width grows.', 'width grid (configs/sweeps/'
     'width.py) not run on CIFAR-10 at this budget'),
    ('The same holds on ImageNet (ConvMixer-512/k8/p7, separable ResNets 8n+2).', 'no ImageNet '
     'and no accelerator here'),
)


def _model_line(config):
  model = config['model']
  if model['name'].startswith('sep_resnet'):
    shape = (f'separable pre-activation ResNet-{model["depth"]} (d = '
             f'{model["depth_multiplier"]}, k{model["kernel_size"]})')
  else:
    shape = (f'{model["name"]} width {model["width"]}, depth {model["depth"]}, kernel '
             f'{model["kernel_size"]}, patch {model["patch_size"]}')
  optimizer = config['optimizer']
  augment = config['augment']
  augments = [a for a, on in (('flip', augment['flip']),
                              (f'RandAugment({augment["randaugment_num_ops"]})',
                               augment['randaugment_num_ops']),
                              (f'crop pad {augment["crop_padding"]}', augment['crop_padding']))
              if on] or ['none']
  steps = (f'{config["num_train_steps"]} steps' if config['num_train_steps'] > 0
           else f'{config["num_epochs"]} epochs')
  adversarial = config['adversarial_training']
  trained_on = (f'; trained on FGSM images (ε = {adversarial["epsilon"]:g}/255)'
                if adversarial['enabled'] else '')
  return (f'{shape}; {steps} × batch {config["batch_size"]}, {optimizer["name"]} lr '
          f'{optimizer["learning_rate"]:g} ({optimizer["schedule"]}), weight decay '
          f'{optimizer["weight_decay"]:g}; augmentation: {", ".join(augments)}; '
          f'{config["dtype"]}{trained_on}')


def setup_and_cost(workdir, grids):
  """Markdown: per grid its setup, the command that fills it and its measured wall time."""
  lines = ['| grid | cells | setup | train wall time | eval wall time |', '|---|---|---|---|---|']
  commands = []
  for grid in grids:
    cells = _cell_dirs(workdir, grid)
    config = records.read_json(os.path.join(cells[0], 'config.json'))
    sweep = records.read_json(os.path.join(workdir, grid, 'sweep.json')) or {}
    train = sum(records.read_json(os.path.join(c, 'results.json'))['wall_time_s'] for c in cells)
    evals = [records.read_json(os.path.join(c, 'eval.json')) for c in cells]
    evaluated = sum(e['wall_time_s'] for e in evals if e)
    evaluated = f'{evaluated / 60:.1f} min' if any(evals) else '—'
    planned = len(sweep.get('cells', {})) or len(cells)
    attacks = (f'; then FGSM/PGD-{config["eval"]["pgd_steps"]} at ε = '
               f'{config["eval"]["epsilons"]} /255 on {config["eval"]["max_examples"]} test '
               'images' if config['eval']['attacks'] else '')
    lines.append(f'| {grid} | {len(cells)}/{planned} | {config["dataset"]}: '
                 f'{_model_line(config)}{attacks} | {train / 60:.1f} min | '
                 f'{evaluated} |')
    data_dir = ('' if config['dataset'] == 'digits'
                else ' \\\n    --config.base.data_dir=../shared/tensorflow_datasets')
    commands.append(f'python -m spatialmix_jax.sweep --config={GRID_CONFIG}:{grid} \\\n'
                    f'    --workdir={os.path.join(workdir, grid)}{data_dir}')
  return lines, commands


def spectral_section(by_grid, out, prefix):
  """Coverage of every frozen-filter family at the ConvMixer grids' width and kernel size."""
  any_cell = by_grid['convmixer_modes'][0]
  width, k = any_cell['width'], any_cell['kernel_size']
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


def _figures(by_grid, out, prefix):
  sections = []
  modes = _plain(by_grid['convmixer_modes'] + by_grid['resnet_modes'])
  if modes:
    sections.append(records.figure(modes, out, 'modes', 'Full / Chans / Space', 'mode',
                                  'test_accuracy', 'test accuracy', prefix))
  families = [r for r in _plain(by_grid['convmixer_modes'] + by_grid['families'])
              if r['mode'] == 'chans']
  if by_grid['families']:
    sections.append(records.figure(families, out, 'filter_families',
                                  'Frozen filter families (Chans)', 'spatial_init',
                                  'test_accuracy', 'test accuracy', prefix))
  # (figure, the grid it shows, grids whose cells it adds, modes shown: None = all)
  for name, grid, extra, modes in (
      ('robustness', 'convmixer_modes', ('smooth',), None),
      ('robustness_long', 'robustness_long', (), None),
      ('adversarial', 'adversarial', ('convmixer_modes',), ('full', 'chans'))):
    if not by_grid[grid]:
      continue
    grids = (grid,) + extra
    attacked = [r for grid in grids for r in by_grid[grid]
                if 'attack' in r and (modes is None or r['mode'] in modes)]
    for attack, label in ATTACK_NAMES.items():
      rows = [r for r in attacked if r['attack'] == attack]
      if rows:
        sections.append(records.figure(rows, out, f'{name}_{attack}',
                                      f'{label} accuracy vs ε (in 1/255), {", ".join(grids)}'
                                      f'{_budget(rows)}', 'epsilon', 'attacked_accuracy',
                                      f'accuracy under {label}', prefix))
  for grid in ('unshuffle', 'unshuffle_digits'):
    if by_grid[grid]:
      dataset = by_grid[grid][0]['dataset']
      sections.append(records.figure(_plain(by_grid[grid]), out, grid,
                                    f'Un-shuffling {dataset}: PSNR (dashed: scrambled input)',
                                    'mode', 'test_psnr', 'test PSNR (dB)', prefix))
  return [s for s in sections if s]


def write(workdir, output):
  """Writes OUTPUT (Markdown) and its figures; returns the list of claims with verdicts."""
  if not os.path.isdir(workdir):
    raise ValueError(f'No reproduction results in {workdir!r}: run the grids of {GRID_CONFIG} '
                     'with python -m spatialmix_jax.sweep first.')
  by_grid = load(workdir)
  if not by_grid['convmixer_modes']:
    raise ValueError(f'{workdir!r} has no finished convmixer_modes cell: run '
                     f'python -m spatialmix_jax.sweep --config={GRID_CONFIG}:convmixer_modes '
                     f'--workdir={os.path.join(workdir, "convmixer_modes")} first.')
  stem = os.path.splitext(os.path.basename(output))[0]
  out = os.path.join(os.path.dirname(os.path.abspath(output)), stem)
  os.makedirs(out, exist_ok=True)
  for name in os.listdir(out):  # a figure the results no longer allow must not linger
    if name.endswith(('.png', '.csv')):
      os.remove(os.path.join(out, name))
  prefix = f'{stem}/'

  spectral_md, coverages = spectral_section(by_grid, out, prefix)
  measured = (
      ('convmixer_modes', modes_claim(by_grid['convmixer_modes'], 'ConvMixer')),
      ('resnet_modes', modes_claim(by_grid['resnet_modes'], 'Separable ResNet')),
      ('families + chans of convmixer_modes',
       families_claim(by_grid['convmixer_modes'], by_grid['families'])),
      ('the models\' init, seed 0', spectral_claim(coverages)),
      ('convmixer_modes', robustness_claim(by_grid['convmixer_modes'])),
      ('robustness_long', robustness_claim(by_grid['robustness_long'])),
      ('smooth + chans of convmixer_modes',
       smoothing_claim(by_grid['convmixer_modes'], by_grid['smooth'])),
      ('robustness_long', smoothing_claim(by_grid['robustness_long'], [])),
      ('adversarial + convmixer_modes',
       adversarial_claim(by_grid['convmixer_modes'], by_grid['adversarial'])),
      ('unshuffle', unshuffle_claim(by_grid['unshuffle'], 'CIFAR-10')),
      ('unshuffle_digits', unshuffle_claim(by_grid['unshuffle_digits'], 'digits')),
  )
  claims = [{**claim, 'grids': grids} for grids, claim in measured]
  claims += [{**_not_measured(claim, why), 'grids': '—'} for claim, why in NOT_RUN]

  table = ['| # | paper claim | grid | measured | rule | verdict |', '|---|---|---|---|---|---|']
  for index, c in enumerate(claims, 1):
    table.append(f'| {index} | {c["claim"]} | {c["grids"]} | {c["measured"]} | {c["rule"]} | '
                 f'**{c["verdict"]}** |')
  setup, commands = setup_and_cost(workdir, [g for g in GRIDS if by_grid[g]])
  discussion = os.path.join(workdir, 'discussion.md')
  document = [
      '# Reproduction on real CIFAR-10 (and digits), CPU budget',
      '',
      'Generated by `python -m spatialmix_jax.reproduction '
      f'--workdir={workdir} --output={output}` from the per-cell `results.json` / `eval.json` '
      f'records committed under `{workdir}/`; rerunning it rewrites this file and the figures in '
      f'`{prefix}` from the same records. The discussion at the end is written by hand.',
      '',
      'CIFAR-10 here is the TFDS `cifar10/3.0.2` prepared from a JPEG copy of the dataset, so its '
      'pixels differ slightly from the original; accuracies are on its 10,000 test images '
      '(attacks: on a subset, see the setup table). Budgets are far below the paper\'s '
      '(minutes per model, not hundreds of epochs): the claim under test is the ordering, not '
      'the paper\'s accuracies.',
      '',
      '## Claims, side by side',
      '',
      'Verdicts follow the rule in their row, applied to the means over seeds.',
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
      *_figures(by_grid, out, prefix),
      spectral_md,
  ]
  if os.path.exists(discussion):
    with open(discussion) as f:
      document.append(f.read().rstrip() + '\n')
  with open(output, 'w') as f:
    f.write('\n'.join(document))
  return claims


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  output = FLAGS.output or os.path.join(FLAGS.workdir, 'reproduction.md')
  try:
    claims = write(FLAGS.workdir, output)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  for claim in claims:
    print(f'{claim["verdict"]:>12}: {claim["claim"]}')
  print(f'Wrote {output}')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'A folder of the reproduction grids '
                      '(configs/sweeps/repro_cifar10.py), one subfolder per grid.')
  flags.DEFINE_string('output', '', 'The Markdown file to write (default '
                      'WORKDIR/reproduction.md); figures go to a folder named after its stem.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
