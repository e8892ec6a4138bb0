"""Figures of the paper redrawn from our runs without a verdict: the report shows them, but no
claim the figure makes is tested by them.

  Fig. 9   envelopes of learned depthwise filters: `python -m spatialmix_jax.study.spectral`
           on a Full cell of fig6_modes and on the Chans cell of the same seed, whose frozen
           filters are the Full cell's initial ones (same seed, same init). Each cell's
           `spectral/coverage.json` is committed; the drawings are copied to docs/figures/.
  Fig. 11  un-shuffled images: a Full and a Chans cell of paper_cifar10/fig10_width (digits,
           width 64) write `unshuffle.png`; copies in docs/figures/ (digits stand in for the
           paper's datasets).
"""

import json
import os

FIG6_MODES = os.path.join('paper_cifar10', 'fig6_modes')
# The drawings: a folder beside the results folder (docs/figures/ for docs/results/), linked from
# a report written beside both (docs/reproduction.md).
FIGURES = 'figures'


def _coverage(path):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)['trained_layers']


def learned_filter_pairs(workdir):
  """[(seed, full coverage, chans coverage)] for every seed of fig6_modes whose Full and Chans
  cells both carry spectral/coverage.json."""
  pairs = []
  folder = os.path.join(workdir, FIG6_MODES)
  if not os.path.isdir(folder):
    return pairs
  for name in sorted(os.listdir(folder)):
    if not name.startswith('mode-full.seed-'):
      continue
    seed = name[len('mode-full.seed-'):]
    full = _coverage(os.path.join(folder, name, 'spectral', 'coverage.json'))
    chans = _coverage(os.path.join(folder, f'mode-chans.seed-{seed}', 'spectral',
                                   'coverage.json'))
    if full is not None and chans is not None:
      pairs.append((int(seed), full, chans))
  return pairs


def _image(workdir, name, caption):
  path = os.path.join(os.path.dirname(os.path.abspath(workdir)), FIGURES, name)
  return [f'![{caption}]({FIGURES}/{name})', ''] if os.path.exists(path) else []


def section(workdir):
  """Markdown lines of the section (empty when no grid has the cells)."""
  pairs = learned_filter_pairs(workdir)
  lines = ['## Figures redrawn without a verdict', '',
           'These redraw a figure of the paper from our runs; no claim the figure makes is '
           'tested by them.', '']
  if pairs:
    lines += [
        '### Fig. 9: envelopes of learned depthwise filters', '',
        'Spectral coverage (the share of the 512×512 frequency plane where a layer\'s envelope '
        'reaches half its peak, `spatialmix_jax.study.spectral`) of each depthwise layer of the '
        'separable ResNet-8 (d = 9) after 4 epochs in Full, beside the same layer\'s filters at '
        'initialisation (the Chans cell of the same seed keeps them frozen).', '',
        '| seed | layer | filters | learned (Full) | at init (Chans) |', '|---|---|---|---|---|']
    for seed, full, chans in pairs:
      for layer, measured in full.items():
        initial = chans.get(layer, {}).get('coverage')
        lines.append(f'| {seed} | {layer} | {measured["filters"]} | '
                     f'{measured["coverage"]:.2f} | '
                     f'{"—" if initial is None else f"{initial:.2f}"} |')
    lines.append('')
    seed = pairs[0][0]
    lines += _image(workdir, f'fig9_full_seed{seed}.png',
                    f'Envelopes of the learned filters, Full, seed {seed}')
    lines += _image(workdir, f'fig9_chans_seed{seed}.png',
                    f'Envelopes of the same layers at init (Chans, seed {seed})')
  fig11 = (_image(workdir, 'fig11_digits_full.png', 'Un-shuffling, Full (digits)')
           + _image(workdir, 'fig11_digits_chans.png', 'Un-shuffling, Chans (digits)'))
  if fig11:
    lines += ['### Fig. 11: un-shuffled images (digits stand-in)', '',
              'Ground truth, scrambled input and reconstruction of the un-shuffling ConvMixer '
              '(width 64, depth 4, kernel 5, patch 1; seed 0 of paper_cifar10/fig10_width), '
              'Full then Chans. The paper shows MNIST, Fashion-MNIST and CIFAR-10; the digits '
              'stand in for them here.', '', *fig11]
  return lines if len(lines) > 4 else []
