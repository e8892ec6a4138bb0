"""The paper's claims as tests on grid records: which cells each claim compares, and how.

A comparison names its *arms*, the values of the fields under test ({'mode': 'chans'} against
{'mode': 'full'}), and compares only cells equal on every other config field, seed and
bookkeeping aside (`records.BOOKKEEPING_FIELDS`): cells that differ in a learning rate, a
budget or an attack are other experiments, never seeds of this one. The seeds of each arm are
read by `significance` as the claim's kind asks (difference, equivalence or non-inferiority),
against the margin of its metric. A claim made of several comparisons takes the verdict of
`significance.combine`; each comparison's numbers and verdict are in its text.

Rows are those of `records.load_cells`: flat config fields (`mode`, `model.spatial_init`,
...), metrics, `attack` / `epsilon` / `attacked_accuracy` for attacked cells, and the record
fields `grid`, `cell` and `frozen_unchanged`, which name a cell and never tell cells apart.
"""

import dataclasses
import math

import numpy as np

from spatialmix_jax.study import records
from spatialmix_jax.study import significance

# Margins of "no effect worth the name": an equivalence claim holds within them, a difference
# whose whole CI lies inside them did not replicate. ±1.5 accuracy points (clean or attacked)
# is about the seed-to-seed spread of a cell here; 0.5 dB of PSNR is a 12 % change of the
# mean squared error (10^0.05 = 1.12), well under the gain over the scrambled input on
# either dataset (3.4 dB CIFAR-10, 14.8 dB digits).
ACCURACY_MARGIN = 0.015
PSNR_MARGIN = 0.5
# "Almost as well": Chans keeps at least this share of Full's PSNR gain over the scrambled
# input, a non-inferiority margin relative to what Full gains, so one rule fits both datasets.
UNSHUFFLE_SHARE = 0.8
SEEDS = 3  # per arm, for any verdict other than inconclusive
HEADLINE_SEEDS = 5  # for the headline claims: Figs. 2/5 modes, Fig. 3 families, Fig. 6
ATTACK_NAMES = {'fgsm': 'FGSM', 'pgd': 'PGD-2'}
CLAIM_EPSILON = 1.0  # ε (in 1/255) at which the paper states its robustness claims
_NOT_CONFIG = set(records.METRICS) | set(records.RECORD_FIELDS) | set(
    records.BOOKKEEPING_FIELDS)


def _scale(metric):
  """(factor, unit, digits, margin) in which `metric` and its differences are shown."""
  return (1, 'dB', 2, PSNR_MARGIN) if 'psnr' in metric else (100, 'pp', 1, ACCURACY_MARGIN)


@dataclasses.dataclass(frozen=True)
class Part:
  """One comparison of a claim: its verdict, its numbers in words, the seeds of each arm and
  the cells it read ('grid/cell')."""
  verdict: str
  text: str
  sizes: tuple = ()
  cells: tuple = ()
  why_not: str = ''  # why a comparison was not measured


def plain(rows):
  return [r for r in rows if 'attack' not in r]


def _label(arm):
  return ', '.join(records.value_label(k, v) for k, v in arm.items())


def _context(row, fields):
  return tuple(sorted((k, repr(v)) for k, v in row.items()
                      if k not in _NOT_CONFIG and k not in fields))


def matched(rows, metric, arms, where=None):
  """([{seed: row}] per arm, None) over the cells with `metric` that match `where` and are
  equal on every config field but those the arms name; (None, why not) when no such cells
  exist. Cells of an arm that have no counterpart in every other arm are left out."""
  fields = set(arms[0])
  if any(set(arm) != fields for arm in arms):
    raise ValueError(f'The arms {arms} of a comparison must name the same fields.')
  if not rows:
    return None, 'grid not run'
  where = where or {}
  attacked = metric == 'attacked_accuracy'  # attacked rows repeat their cell's clean metrics
  pool = [r for r in rows if metric in r and ('attack' in r) == attacked
          and all(r.get(k) == v for k, v in where.items())]
  by_context = {}
  for row in pool:
    for index, arm in enumerate(arms):
      if all(row.get(k) == v for k, v in arm.items()):
        groups = by_context.setdefault(_context(row, fields), [{} for _ in arms])
        groups[index].setdefault(row['seed'], row)
  absent = [_label(arm) for i, arm in enumerate(arms)
            if not any(groups[i] for groups in by_context.values())]
  if absent:
    return None, f'grid incomplete: no finished {", ".join(absent)} cell yet'
  complete = [groups for groups in by_context.values() if all(groups)]
  if not complete:
    first = [next(dict(c) for c, g in by_context.items() if g[i]) for i in range(len(arms))]
    differ = sorted({k for c in first for k in c if any(d.get(k) != c.get(k) for d in first)})
    return None, (f'no {" / ".join(_label(a) for a in arms)} cells equal on every other field '
                  f'(they differ in {", ".join(records.short(k) for k in differ)})')
  if len(complete) > 1:
    contexts = [dict(c) for c, g in by_context.items() if all(g)]
    differ = sorted({k for c in contexts for k in c if any(d.get(k) != c.get(k)
                                                           for d in contexts)})
    # The claim's definition, not the records, is at fault: keep the traceback.
    raise RuntimeError(f'{len(complete)} sets of cells compare {[_label(a) for a in arms]}, '
                       f'differing in {differ}: the claim must fix those fields (where=).')
  return complete[0], None


def _p(p, name='p'):
  if math.isnan(p):
    return f'{name} n/a'
  return f'{name} < 0.001' if p < 0.001 else f'{name} = {p:.3f}'


def _mean(values, digits):
  text = f'{np.mean(values):.{digits}f}'
  return text + (f' ± {np.std(values, ddof=1):.{digits}f}' if len(values) > 1 else '')


def describe_reading(contrast, reading, metric, kind, margin):
  """'Δ +2.2 pp, 95 % CI [+0.1, +4.3], p = 0.041, n = 3 + 3 → agrees' and the like."""
  factor, unit, digits, _ = _scale(metric)
  if math.isnan(reading.interval[0]):
    interval = 'no CI (an arm has one seed)'
  else:
    low, high = (factor * v for v in reading.interval)
    interval = f'{100 * reading.confidence:.0f} % CI [{low:+.{digits}f}, {high:+.{digits}f}]'
  name = {'difference': 'p',
          'equivalence': f'p(TOST ±{factor * margin:g} {unit})',
          'non-inferiority': f'p(Δ > {f"−{factor * margin:g}" if margin else "0"} {unit})'}[kind]
  reason = f' ({reading.reason})' if reading.reason else ''
  return (f'Δ {factor * contrast.delta:+.{digits}f} {unit}, {interval}, '
          f'{_p(reading.p, name)}, n = {" + ".join(map(str, contrast.sizes))} → '
          f'{reading.verdict}{reason}')


def _cells(groups):
  return tuple(f'{r.get("grid", "")}/{r["cell"]}'.lstrip('/') for g in groups
               for r in g.values() if 'cell' in r)


def compare(rows, metric, arms, kind, min_seeds, label, names=None, where=None,
            weights=(1.0, -1.0), margin=None):
  """A Part: the contrast Σ wᵢ·mean(metric of arm i) read as a claim of KIND."""
  groups, why = matched(rows, metric, arms, where)
  if groups is None:
    return Part('not measured', f'{label}: {why}', why_not=why)
  values = [[r[metric] for r in g.values()] for g in groups]
  contrast = significance.contrast(values, weights)
  margin = _scale(metric)[3] if margin is None else margin
  reading = significance.read(contrast, kind, margin, min_seeds)
  digits = 2 if 'psnr' in metric else 4
  names = names or [_label(a) for a in arms]
  means = ', '.join(f'{n} {_mean(v, digits)}' for n, v in zip(names, values))
  return Part(reading.verdict, f'{label}: {means}; '
              + describe_reading(contrast, reading, metric, kind, margin),
              contrast.sizes, _cells(groups))


def not_measured(why):
  return {'measured': why, 'verdict': 'not measured', 'test': '—', 'seeds': '—', 'cells': ()}


def test_name(kind, metric, min_seeds):
  """The test a claim of KIND on METRIC gets, in words, for the table's test column."""
  factor, unit, _, margin = _scale(metric)
  alpha = f'α = {significance.ALPHA:g} ({100 * significance.confidence(kind):.0f} % CI)'
  test = {'difference': f'Welch t, two-sided, {alpha}; did not replicate: CI inside '
                        f'±{factor * margin:g} {unit}',
          'equivalence': f'TOST at ±{factor * margin:g} {unit}, {alpha}',
          'non-inferiority': f'one-sided Welch t at −{factor * margin:g} {unit}, {alpha}'}[kind]
  return f'{test}; ≥ {min_seeds} seeds per arm'


def claim(parts, test):
  """The claims-table entry of a claim made of PARTS."""
  if parts and all(p.why_not == 'grid not run' for p in parts):
    return not_measured('grid not run')
  cells = tuple(c for p in parts for c in p.cells)
  return {'measured': '; '.join(p.text for p in parts),
          'verdict': significance.combine([p.verdict for p in parts]), 'test': test,
          'seeds': _seeds([n for p in parts for n in p.sizes]),
          'cells': tuple(dict.fromkeys(cells))}


def _seeds(sizes):
  """'2 per arm', '1–2 per arm': the seeds behind a claim's comparisons."""
  if not sizes:
    return '—'
  low, high = min(sizes), max(sizes)
  return f'{low} per arm' if low == high else f'{low}–{high} per arm'


def modes_match(rows, min_seeds=HEADLINE_SEEDS):
  """Chans nearly matches Full: clean accuracy equivalent within the margin."""
  return claim([compare(rows, 'test_accuracy', [{'mode': 'chans'}, {'mode': 'full'}],
                        'equivalence', min_seeds, 'Chans − Full', ['chans', 'full'])],
               test_name('equivalence', 'test_accuracy', min_seeds))


def space_lags(rows, min_seeds=HEADLINE_SEEDS):
  """Space lags far behind: below Full and below Chans in clean accuracy."""
  return claim([compare(rows, 'test_accuracy', [{'mode': m}, {'mode': 'space'}], 'difference',
                        min_seeds, f'{m.title()} − Space', [m, 'space'])
                for m in ('full', 'chans')],
               test_name('difference', 'test_accuracy', min_seeds))


def families(rows, min_seeds=HEADLINE_SEEDS, others=('same', 'box', 'identity')):
  """Decorrelated random frozen filters beat "same", box and identity ones (Chans)."""
  return claim([compare(rows, 'test_accuracy', [{'model.spatial_init': 'random'},
                                                {'model.spatial_init': f}], 'difference',
                        min_seeds, f'random − {f}', ['random', f], where={'mode': 'chans'})
                for f in others], test_name('difference', 'test_accuracy', min_seeds))


def spectral(coverages, family_rows):
  """Random banks cover more of the frequency plane than "same" and box ones (one bank each,
  deterministic), shown beside the Chans accuracy each family reaches in FAMILY_ROWS."""
  agrees = all(coverages['random'] > coverages[f] for f in ('same', 'box'))
  listed = ', '.join(f'{name} {value:.2f}' for name, value in coverages.items())
  chans = [r for r in plain(family_rows) if r['mode'] == 'chans']
  accuracy = records.group(chans, ['model.spatial_init'], 'test_accuracy')
  reached = ', '.join(f'{key[0]} {mean:.4f}' for key, (mean, _, _) in accuracy.items())
  return {'measured': f'coverage {listed}; Chans test accuracy of the same families: '
                      f'{reached or "no cells"}',
          'verdict': 'agrees' if agrees else 'disagrees',
          'test': 'deterministic comparison of one bank per family (seed 0): random coverage '
                  'above same and box; coverage is not tested as a predictor of accuracy',
          'seeds': '— (one bank)', 'cells': ()}


def _values(rows, field):
  return sorted({r[field] for r in plain(rows) if field in r}, key=records.sort_key)


def width_match(rows, field='model.width_multiplier', min_seeds=SEEDS):
  """At the widest width, Chans matches Full (equivalence)."""
  widths = _values(rows, field)
  if len(widths) < 2:
    return not_measured('grid not run')
  return claim([compare(rows, 'test_accuracy', [{'mode': 'chans'}, {'mode': 'full'}],
                        'equivalence', min_seeds, f'Chans − Full at ×{widths[-1]}',
                        ['chans', 'full'], where={field: widths[-1]})],
               test_name('equivalence', 'test_accuracy', min_seeds))


def width_narrows(rows, field='model.width_multiplier', min_seeds=SEEDS):
  """The Full − Chans gap at the narrowest width exceeds the one at the widest (a difference
  of differences of four independent groups of seeds)."""
  widths = _values(rows, field)
  if len(widths) < 2:
    return not_measured('grid not run')
  narrow, wide = widths[0], widths[-1]
  arms = [{field: w, 'mode': m} for w in (narrow, wide) for m in ('full', 'chans')]
  part = compare(rows, 'test_accuracy', arms, 'difference', min_seeds,
                 f'(Full − Chans at ×{narrow}) − (Full − Chans at ×{wide})',
                 [f'full ×{narrow}', f'chans ×{narrow}', f'full ×{wide}', f'chans ×{wide}'],
                 weights=(1.0, -1.0, -1.0, 1.0))
  return claim([part], test_name('difference', 'test_accuracy', min_seeds))


def _attacked(attack):
  return {'attack': attack, 'epsilon': CLAIM_EPSILON}


def robustness(rows, other='full', min_seeds=HEADLINE_SEEDS, where=None):
  """Chans keeps more accuracy than OTHER under FGSM and PGD-2 at ε = 1/255."""
  parts = [compare(rows, 'attacked_accuracy', [{'mode': 'chans'}, {'mode': other}],
                   'difference', min_seeds, f'{label}: Chans − {other.title()}',
                   ['chans', other], where={**_attacked(attack), **(where or {})})
           for attack, label in ATTACK_NAMES.items()]
  return claim(parts, test_name('difference', 'attacked_accuracy', min_seeds))


def adversarial(trained_rows, min_seeds=SEEDS):
  """After FGSM adversarial training the gap is gone: Chans and Full equivalent under both
  attacks."""
  where = {'adversarial_training.enabled': True}
  parts = [compare(trained_rows, 'attacked_accuracy', [{'mode': 'chans'}, {'mode': 'full'}],
                   'equivalence', min_seeds, f'{label}, FGSM-trained: Chans − Full',
                   ['chans', 'full'], where={**_attacked(attack), **where})
           for attack, label in ATTACK_NAMES.items()]
  return claim(parts, test_name('equivalence', 'attacked_accuracy', min_seeds))


def _sigmas(rows):
  return sorted({r['model.smooth_sigma'] for r in rows if r.get('mode') == 'chans'
                 and r.get('model.spatial_init') == 'smooth'})


def _smooth_arms(sigma):
  return [{'model.spatial_init': 'smooth', 'model.smooth_sigma': sigma},
          {'model.spatial_init': 'random', 'model.smooth_sigma': 0.0}]


def smoothing(rows, min_seeds=SEEDS):
  """Smoothed frozen random filters make Chans more robust than plain random ones."""
  if not _sigmas(rows):
    return not_measured('grid not run')
  parts = [compare(rows, 'attacked_accuracy', _smooth_arms(sigma), 'difference', min_seeds,
                   f'{label}: σ={sigma:g} − plain', [f'σ={sigma:g}', 'plain'],
                   where={'mode': 'chans', **_attacked(attack)})
           for attack, label in ATTACK_NAMES.items() for sigma in _sigmas(rows)]
  return claim(parts, test_name('difference', 'attacked_accuracy', min_seeds))


def smoothing_clean(rows, min_seeds=SEEDS):
  """...without hurting clean accuracy: smoothed not below plain by more than the margin."""
  if not _sigmas(rows):
    return not_measured('grid not run')
  parts = [compare(rows, 'test_accuracy', _smooth_arms(sigma), 'non-inferiority', min_seeds,
                   f'clean: σ={sigma:g} − plain', [f'σ={sigma:g}', 'plain'],
                   where={'mode': 'chans'}) for sigma in _sigmas(rows)]
  return claim(parts, test_name('non-inferiority', 'test_accuracy', min_seeds))


def _share_part(rows, min_seeds, label, where):
  """Chans − scrambled − UNSHUFFLE_SHARE × (Full − scrambled) > 0, one-sided."""
  groups, why = matched(rows, 'test_psnr', [{'mode': 'chans'}, {'mode': 'full'}], where)
  if groups is None:
    return Part('not measured', f'{label}: {why}', why_not=why)
  chans, full = ([r['test_psnr'] for r in g.values()] for g in groups)
  scrambled = float(np.mean([r['scrambled_psnr'] for r in groups[1].values()]))
  # The scrambled input's PSNR is one number per test set, not a random variable of a seed.
  contrast = significance.contrast([chans, full], [1.0, -UNSHUFFLE_SHARE],
                                   -(1 - UNSHUFFLE_SHARE) * scrambled)
  reading = significance.read(contrast, 'non-inferiority', 0.0, min_seeds)
  share = (np.mean(chans) - scrambled) / (np.mean(full) - scrambled)
  return Part(reading.verdict,
              f'{label}: PSNR full {_mean(full, 2)} dB, chans {_mean(chans, 2)} dB, '
              f'scrambled {scrambled:.2f} dB, Chans keeps {100 * share:.0f} % of the gain; '
              + describe_reading(contrast, reading, 'test_psnr', 'non-inferiority', 0.0),
              contrast.sizes, _cells(groups))


def unshuffle_share(rows, field=None, min_seeds=SEEDS):
  """Chans keeps at least UNSHUFFLE_SHARE of Full's PSNR gain over the scrambled input, at
  every value of FIELD the grid sweeps (or once)."""
  if not rows:
    return not_measured('grid not run')
  if field is None:
    parts = [_share_part(rows, min_seeds, 'Chans vs Full', None)]
  else:
    parts = [_share_part(rows, min_seeds, f'{records.short(field)} {v}', {field: v})
             for v in _values(rows, field)]
  confidence = 100 * significance.confidence('non-inferiority')
  return claim(parts, f'one-sided Welch t on Chans − scrambled − '
               f'{UNSHUFFLE_SHARE:g} × (Full − scrambled) > 0 dB, α = {significance.ALPHA:g} '
               f'({confidence:.0f} % CI); ≥ {min_seeds} seeds per arm')


def unshuffle_growth(rows, field, mode='chans', min_seeds=SEEDS):
  """PSNR (of MODE) grows with FIELD: every step up the sweep raises it."""
  sizes = _values(rows, field)
  if len(sizes) < 2:
    return not_measured('grid not run')
  name = records.short(field)
  parts = [compare(rows, 'test_psnr', [{field: high}, {field: low}], 'difference', min_seeds,
                   f'{name} {high} − {low}', [f'{name}={high}', f'{name}={low}'],
                   where={'mode': mode})
           for low, high in zip(sizes, sizes[1:])]
  return claim(parts, test_name('difference', 'test_psnr', min_seeds))
