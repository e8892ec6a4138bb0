"""The reproduction's claims table: each claim of the paper, split into the halves it makes, on
every grid that tests it, with how that grid's model stands to the figure's own.

Figures as the paper numbers them: 2 and 4 separable ResNets (modes; width), 3 frozen filter
families, 5 ConvMixers (modes, depths swept), 6 FGSM / PGD-2 robustness and FGSM adversarial
training (separable ResNet), 7 smoothing a ConvMixer's frozen filters, 9 envelopes of learned
filters, 10 pixel un-shuffling of CIFAR-10 (kernel size, width, depth), 11 and B.2–B.5 pixel
un-shuffling on MNIST, Fashion-MNIST and CIFAR-10. The claim texts are our reading of the
figures, split where a figure makes two claims ("more robust *without hurting* clean
accuracy"), each half with its own verdict.
"""

from spatialmix_jax.modeling import presets
from spatialmix_jax.study import records
from spatialmix_jax.study import strong_attack_report
from spatialmix_jax.study import verdicts

GRIDS = ('paper_cifar10/fig6_modes', 'paper_cifar10/fig6_adversarial',
         'paper_cifar10/fig3_families', 'paper_cifar10/fig4_width', 'paper_cifar10/fig10_kernel',
         'paper_cifar10/fig10_depth', 'paper_cifar10/fig10_width',
         'paper_cifar10/fig5_convmixer', 'paper_cifar10/fig7_smooth',
         'repro_cifar10/convmixer_modes', 'repro_cifar10/resnet_modes', 'repro_cifar10/families',
         'repro_cifar10/smooth', 'repro_cifar10/robustness_long', 'repro_cifar10/adversarial',
         'repro_cifar10/unshuffle', 'repro_cifar10/unshuffle_digits')
RESNET_FIGURES = ('Fig. 2', 'Fig. 3', 'Fig. 4', 'Fig. 6')  # the paper's separable ResNets
CONVMIXER_FIGURES = ('Fig. 5', 'Fig. 7')  # the paper's CIFAR ConvMixer
PAPER_CONVMIXER = presets.get('spatialmix_cifar')


def _swept(rows, field):
  """FIELD's value in a grid's cells, or its values in braces where the grid sweeps it."""
  values = sorted({r[field] for r in rows}, key=records.sort_key)
  return str(values[0]) if len(values) == 1 else '{' + ','.join(map(str, values)) + '}'


def model(rows):
  """The model of a grid's cells, swept fields in braces: 'ConvMixer-128/4 k5 p2'."""
  name = rows[0]['model.name']
  if 'resnet' in name:
    text = (f'separable pre-act ResNet-{_swept(rows, "model.depth")}, d = '
            f'{_swept(rows, "model.depth_multiplier")}')
    multiplier = _swept(rows, 'model.width_multiplier')
    return text + ('' if multiplier == '1' else f', width ×{multiplier}')
  prefix = 'un-shuffling ConvMixer' if name.startswith('unshuffle') else 'ConvMixer'
  return (f'{prefix}-{_swept(rows, "model.width")}/{_swept(rows, "model.depth")} '
          f'k{_swept(rows, "model.kernel_size")} p{_swept(rows, "model.patch_size")}')


def _paper_convmixer():
  m = PAPER_CONVMIXER.model
  return f'{m["width"]}/k{m["kernel_size"]}/p{m["patch_size"]}'


def architecture(figure, rows):
  """How the model of ROWS stands to the architecture of FIGURE, in words."""
  if not rows:
    return '—'
  ours = model(rows)
  name = rows[0]['model.name']
  if figure in RESNET_FIGURES:
    if 'resnet' in name:
      return f'{ours}: the figure\'s separable ResNet (depth and budget ours)'
    return f'{ours}: **not this figure\'s architecture** (a separable ResNet)'
  if figure in CONVMIXER_FIGURES:
    m = PAPER_CONVMIXER.model
    if name == 'convmixer' and all(rows[0][f'model.{k}'] == m[k]
                                   for k in ('width', 'kernel_size', 'patch_size')):
      return f'{ours}: the paper\'s CIFAR ConvMixer'
    return (f'{ours}: ConvMixer, **not the paper\'s size** ({ours[len("ConvMixer-"):]} vs '
            f'{_paper_convmixer()})')
  if figure == '§3.1':
    return (f'{ours}: its frozen bank of {rows[0]["model.width"]} filters, '
            f'{rows[0]["model.kernel_size"]}×{rows[0]["model.kernel_size"]}')
  if figure == 'Fig. 10':
    if rows[0]['dataset'] == 'digits':
      return f'{ours}: **digits stand-in for CIFAR-10** (Fig. 10)'
    return f'{ours}: Fig. 10\'s dataset (CIFAR-10)'
  return ours


def budget(rows):
  """'4 epochs × 128' (or steps) of a claim's cells, each distinct budget once."""
  seen = []
  for r in verdicts.plain(rows):
    steps = (f'{r["num_train_steps"]} steps' if r['num_train_steps'] > 0
             else f'{r["num_epochs"]} epochs')
    text = f'{steps} × {r["batch_size"]}'
    if r['adversarial_training.enabled']:
      text += f', FGSM-trained at {r["adversarial_training.epsilon"]:g}/255'
    if text not in seen:
      seen.append(text)
  return '; '.join(seen) or '—'


def table(rows, coverages, strong_attacks=None):
  """[(figure, claim, grids, result)] in the paper's order; result as verdicts' claims.
  `strong_attacks`: fig6_modes' strong-attack records (`strong_attack_report.load`)."""
  g = rows
  fig6, convmixer = g['paper_cifar10/fig6_modes'], g['repro_cifar10/convmixer_modes']
  fig5, fig7 = g['paper_cifar10/fig5_convmixer'], g['paper_cifar10/fig7_smooth']
  robust_long = g['repro_cifar10/robustness_long']
  match = 'Chans (spatial filters frozen at random init) nearly matches Full.'
  lags = 'Space (channel mixing frozen) lags far behind Full and Chans.'
  families = ('Frozen filters must be decorrelated random ones: "same" random kernels in '
              'every channel, box and identity filters do worse.')
  robust = 'Chans is more robust than Full to FGSM and PGD-2 at ε = 1/255.'
  robust_space = ('Chans is more robust than Space at ε = 1/255 (our reading: the robustness '
                  'comes from random fixed spatial mixing, which Space trains).')
  adversarial = 'After FGSM adversarial training the robustness gap between Chans and Full is gone.'
  smooth = 'Low-pass smoothing the frozen random filters makes Chans more robust still…'
  smooth_clean = '…without hurting clean accuracy.'
  share = 'Pixel un-shuffling works almost as well with Chans as with Full'
  grows = 'Chans un-shuffling PSNR grows with {}'
  return [
      ('Fig. 2', match, ('paper_cifar10/fig6_modes',), verdicts.modes_match(fig6)),
      ('Fig. 2', lags, ('paper_cifar10/fig6_modes',), verdicts.space_lags(fig6)),
      ('Fig. 2', match, ('repro_cifar10/resnet_modes',),
       verdicts.modes_match(g['repro_cifar10/resnet_modes'])),
      ('Fig. 2', lags, ('repro_cifar10/resnet_modes',),
       verdicts.space_lags(g['repro_cifar10/resnet_modes'])),
      ('Fig. 5', match, ('paper_cifar10/fig5_convmixer',), verdicts.modes_match(fig5)),
      ('Fig. 5', lags, ('paper_cifar10/fig5_convmixer',), verdicts.space_lags(fig5)),
      ('Fig. 5', match, ('repro_cifar10/convmixer_modes',), verdicts.modes_match(convmixer)),
      ('Fig. 5', lags, ('repro_cifar10/convmixer_modes',), verdicts.space_lags(convmixer)),
      ('Fig. 3', families, ('paper_cifar10/fig6_modes', 'paper_cifar10/fig3_families'),
       verdicts.families(fig6 + g['paper_cifar10/fig3_families'])),
      ('Fig. 3', families, ('repro_cifar10/convmixer_modes', 'repro_cifar10/families'),
       verdicts.families(convmixer + g['repro_cifar10/families'])),
      ('§3.1', 'Random filter banks cover the spectrum widely (envelope: the largest FFT '
       'magnitude of any filter, at 512×512). Tested: the random bank covers more than "same" '
       'and box ones; not tested: that coverage ranks accuracy (identity covers all of it and '
       'trains worst).', ('repro_cifar10/convmixer_modes', 'repro_cifar10/families'),
       verdicts.spectral(coverages, convmixer + g['repro_cifar10/families'])),
      ('Fig. 4', 'At the widest width Chans matches Full (the gap has closed).',
       ('paper_cifar10/fig4_width',), verdicts.width_match(g['paper_cifar10/fig4_width'])),
      ('Fig. 4', 'The Full − Chans gap narrows as width grows.', ('paper_cifar10/fig4_width',),
       verdicts.width_narrows(g['paper_cifar10/fig4_width'])),
      ('Fig. 6', robust, ('paper_cifar10/fig6_modes',), verdicts.robustness(fig6)),
      ('Fig. 6', 'Under attacks stronger than the paper\'s (PGD-20 with a random start and '
       'APGD-CE, white-box and crafted on Full, each read alone and all at once) Chans is still '
       'more robust than Full at ε = 1/255.', ('paper_cifar10/fig6_modes',),
       strong_attack_report.table_entry(strong_attacks or {}, 'paper_cifar10/fig6_modes')),
      ('Fig. 6', robust, ('paper_cifar10/fig5_convmixer',), verdicts.robustness(fig5)),
      ('Fig. 6', robust, ('repro_cifar10/convmixer_modes',), verdicts.robustness(convmixer)),
      ('Fig. 6', robust, ('repro_cifar10/robustness_long',),
       verdicts.robustness(robust_long, where={'model.spatial_init': 'random'})),
      ('Fig. 6', robust_space, ('paper_cifar10/fig6_modes',),
       verdicts.robustness(fig6, other='space')),
      ('Fig. 6', robust_space, ('repro_cifar10/convmixer_modes',),
       verdicts.robustness(convmixer, other='space')),
      ('Fig. 6', adversarial, ('paper_cifar10/fig6_adversarial',),
       verdicts.adversarial(g['paper_cifar10/fig6_adversarial'])),
      ('Fig. 6', adversarial, ('repro_cifar10/adversarial',),
       verdicts.adversarial(g['repro_cifar10/adversarial'])),
      ('Fig. 7', smooth, ('paper_cifar10/fig5_convmixer', 'paper_cifar10/fig7_smooth'),
       verdicts.smoothing(fig5 + fig7)),
      ('Fig. 7', smooth_clean, ('paper_cifar10/fig5_convmixer', 'paper_cifar10/fig7_smooth'),
       verdicts.smoothing_clean(fig5 + fig7)),
      ('Fig. 7', smooth, ('repro_cifar10/convmixer_modes', 'repro_cifar10/smooth'),
       verdicts.smoothing(convmixer + g['repro_cifar10/smooth'])),
      ('Fig. 7', smooth_clean, ('repro_cifar10/convmixer_modes', 'repro_cifar10/smooth'),
       verdicts.smoothing_clean(convmixer + g['repro_cifar10/smooth'])),
      ('Fig. 7', smooth, ('repro_cifar10/robustness_long',), verdicts.smoothing(robust_long)),
      ('Fig. 7', smooth_clean, ('repro_cifar10/robustness_long',),
       verdicts.smoothing_clean(robust_long)),
      ('Fig. 10', share + ', at every width.', ('paper_cifar10/fig10_width',),
       verdicts.unshuffle_share(g['paper_cifar10/fig10_width'], 'model.width')),
      ('Fig. 10', share + ', at every depth.', ('paper_cifar10/fig10_depth',),
       verdicts.unshuffle_share(g['paper_cifar10/fig10_depth'], 'model.depth')),
      ('Fig. 10', share + '.', ('repro_cifar10/unshuffle_digits',),
       verdicts.unshuffle_share(g['repro_cifar10/unshuffle_digits'])),
      ('Fig. 10', share + '.', ('repro_cifar10/unshuffle',),
       verdicts.unshuffle_share(g['repro_cifar10/unshuffle'])),
      ('Fig. 10', grows.format('kernel size, though its parameter count does not.'),
       ('paper_cifar10/fig10_kernel',),
       verdicts.unshuffle_growth(g['paper_cifar10/fig10_kernel'], 'model.kernel_size')),
      ('Fig. 10', grows.format('width.'), ('paper_cifar10/fig10_width',),
       verdicts.unshuffle_growth(g['paper_cifar10/fig10_width'], 'model.width')),
      ('Fig. 10', grows.format('depth.'), ('paper_cifar10/fig10_depth',),
       verdicts.unshuffle_growth(g['paper_cifar10/fig10_depth'], 'model.depth')),
      ('Fig. 9', 'Envelopes of learned spatial filters.', (),
       verdicts.not_measured('no claim of the figure is tested; "Figures redrawn without a '
                             'verdict" below redraws it for the fig6_modes seeds with spectral '
                             'records')),
      ('Figs. 11, B.2–B.5', 'Un-shuffling on MNIST and Fashion-MNIST (B.2 is MNIST; which '
       'of the others shows which dataset is not checked here).', (),
       verdicts.not_measured('no MNIST or Fashion-MNIST offline')),
      ('Figs. 2, 4, 5', 'The same holds on ImageNet.', (),
       verdicts.not_measured('no ImageNet and no accelerator here')),
  ]


def unrun_architecture(figure):
  """The architecture of a claim no grid of ours tests, as far as the paper states it."""
  if figure == 'Figs. 2, 4, 5':
    return (f'the paper\'s ImageNet models: {presets.get("spatialmix_imagenet").describe()} '
            '(the paper states no depth) and separable ResNets')
  return '—'


def integrity(rows):
  """{'grid/cell': frozen_unchanged} of every cell whose record does not say True: False when
  its frozen collections changed during training, None when that could not be checked."""
  return {f'{r["grid"]}/{r["cell"]}': r['frozen_unchanged'] for grid_rows in rows.values()
          for r in verdicts.plain(grid_rows) if r['frozen_unchanged'] is not True}


def read(rows, coverages, strong_attacks=None):
  """The claims table's entries: claims.table's verdicts with each row's architecture, budget
  and the cells it read whose frozen collections changed during training (`flagged`)."""
  changed = {cell for cell, unchanged in integrity(rows).items() if unchanged is False}
  entries = []
  for figure, claim, grids, result in table(rows, coverages, strong_attacks):
    grid_rows = [r for g in grids for r in rows[g]]
    entries.append({
        'figure': figure, 'claim': claim, 'grids': ', '.join(grids) or '—',
        'architecture': (architecture(figure, grid_rows) if grids
                         else unrun_architecture(figure)),
        'budget': budget(grid_rows), **result,
        'flagged': tuple(c for c in result['cells'] if c in changed)})
  return entries


def verdict_cell(claim):
  """The verdict in bold, and a warning no reader can miss when it reads a cell whose frozen
  collections changed."""
  text = f'**{claim["verdict"]}**'
  if claim['flagged']:
    text += (f' ⚠ **reads {len(claim["flagged"])} cell(s) whose frozen weights changed** '
             '(see "Integrity")')
  return text


def integrity_section(rows, claims):
  """Every cell whose record does not vouch for its frozen collections, and the claims that
  read it."""
  checked = integrity(rows)
  lines = ['## Integrity of the records', '']
  if not checked:
    return lines + ['Every cell records `frozen_unchanged: true`: its frozen collections held '
                    'their initial values, bit for bit, when it was evaluated.', '']
  changed = sorted(c for c, v in checked.items() if v is False)
  if changed:
    lines += [f'⚠ **{len(changed)} cell(s) record `frozen_unchanged: false`**: when evaluated, '
              'their frozen collections were not bit-identical to the initial values the check '
              'recomputed. Either the freezing failed or the check recomputed the initial '
              'values along another floating-point path; these records cannot tell which. '
              'Their numbers are used, and every claim row that reads them says so in its '
              'verdict; such a verdict stands only if the check proves a false alarm.', '']
    for cell in changed:
      rows_reading = [str(i) for i, c in enumerate(claims, 1) if cell in c['flagged']]
      lines.append(f'- `{cell}` (claim rows {", ".join(rows_reading) or "none"})')
    lines.append('')
  unchecked = sorted(c for c, v in checked.items() if v is None)
  if unchecked:
    lines += [f'{len(unchecked)} cell(s) could not be checked (`frozen_unchanged: null`): '
              + ', '.join(f'`{c}`' for c in unchecked) + '.', '']
  return lines
