"""The paper's claims as tests on grid records, each read against the spread of its seeds.

The rule, the same for every comparison: Δ is the difference of the two means (over seeds) and
s the pooled sample standard deviation of the two groups of seeds. |Δ| < 2·s reads
*inconclusive*, and so does a group of one seed (no spread to compare with); otherwise the
sign of Δ decides between *agrees* and *disagrees*. A claim made of several comparisons
(two attacks, three filter families) agrees when all of them do, disagrees when any does, and
is inconclusive otherwise.

Rows are those of `records.load_cells`: flat config fields (`mode`, `model.spatial_init`,
...), metrics, and `attack` / `epsilon` / `attacked_accuracy` for attacked cells.
"""

import math

import numpy as np

RULE = ('|Δ| < 2 × pooled std over seeds, or one seed → inconclusive; else the sign of Δ '
        'decides')
ATTACK_NAMES = {'fgsm': 'FGSM', 'pgd': 'PGD-2'}
CLAIM_EPSILON = 1.0  # ε (in 1/255) at which the paper states its robustness claims
UNSHUFFLE_SHARE = 0.8  # "almost as well": Chans keeps this share of Full's PSNR gain


def decide(higher, lower):
  """(Δ, s, verdict) for the claim that `higher` exceeds `lower` (lists of per-seed values)."""
  delta = float(np.mean(higher) - np.mean(lower))
  if len(higher) < 2 or len(lower) < 2:
    return delta, None, 'inconclusive'
  pooled = math.sqrt(((len(higher) - 1) * np.var(higher, ddof=1)
                      + (len(lower) - 1) * np.var(lower, ddof=1))
                     / (len(higher) + len(lower) - 2))
  if abs(delta) < 2 * pooled or delta == 0:
    return delta, pooled, 'inconclusive'
  return delta, pooled, 'agrees' if delta > 0 else 'disagrees'


def decide_against(measured, threshold):
  """(Δ, s, verdict) for the claim that `measured` (per-seed values) exceeds a constant: the
  same rule with s the values' own sample standard deviation."""
  delta = float(np.mean(measured) - threshold)
  if len(measured) < 2:
    return delta, None, 'inconclusive'
  spread = float(np.std(measured, ddof=1))
  if abs(delta) < 2 * spread or delta == 0:
    return delta, spread, 'inconclusive'
  return delta, spread, 'agrees' if delta > 0 else 'disagrees'


def combine(verdicts):
  if any(v == 'disagrees' for v in verdicts):
    return 'disagrees'
  return 'agrees' if verdicts and all(v == 'agrees' for v in verdicts) else 'inconclusive'


def plain(rows):
  return [r for r in rows if 'attack' not in r]


def values(rows, metric, **where):
  """{seed: value} of `metric` over the rows whose fields equal `where` (dots as __)."""
  where = {k.replace('__', '.'): v for k, v in where.items()}
  return {r['seed']: r[metric] for r in rows
          if metric in r and all(r.get(k) == v for k, v in where.items())}


def attacked(rows, attack, **where):
  return values([r for r in rows if r.get('attack') == attack
                 and r['epsilon'] == CLAIM_EPSILON], 'attacked_accuracy', **where)


def _mean(per_seed, digits=4):
  vals = list(per_seed.values())
  text = f'{np.mean(vals):.{digits}f}'
  return text + (f' ± {np.std(vals, ddof=1):.{digits}f}' if len(vals) > 1 else '') + (
      f' ({len(vals)} seeds)' if len(vals) > 1 else ' (1 seed)')


def _delta(delta, spread, scale=100, unit='pp'):
  return (f'Δ {scale * delta:+.1f} {unit}' + (f', s {scale * spread:.1f}' if spread is not None
                                             else ''))


def _gaps(minuend, subtrahend):
  """Per-seed differences of two {seed: value} maps, over the seeds both have."""
  return [minuend[s] - subtrahend[s] for s in sorted(set(minuend) & set(subtrahend))]


def result(measured, verdict, rule=RULE):
  return {'measured': measured, 'verdict': verdict, 'rule': rule}


def not_measured(why):
  return result(why, 'not measured', '—')


def missing(rows, absent):
  """Not measured: the grid has no finished cell at all, or none of ABSENT (names) yet."""
  if not rows:
    return not_measured('grid not run')
  return not_measured(f'grid incomplete: no finished {", ".join(absent)} cell yet')


def modes(rows):
  """Chans nearly matches Full, Space lags far behind: Chans above Space."""
  acc = {m: values(plain(rows), 'test_accuracy', mode=m) for m in ('full', 'chans', 'space')}
  if not all(acc.values()):
    return missing(rows, [m for m, a in acc.items() if not a])
  delta, spread, verdict = decide(list(acc['chans'].values()), list(acc['space'].values()))
  gap = np.mean(list(acc['full'].values())) - np.mean(list(acc['chans'].values()))
  return result(f'full {_mean(acc["full"])}, chans {_mean(acc["chans"])}, space '
                f'{_mean(acc["space"])}; Chans − Space {_delta(delta, spread)}; Full − Chans '
                f'{100 * gap:+.1f} pp', verdict,
                f'Chans above Space (then Chans is closer to Full than Space is); {RULE}')


def families(rows, others=('same', 'box', 'identity')):
  """Decorrelated random frozen filters beat "same", box and identity ones (Chans)."""
  chans = [r for r in plain(rows) if r['mode'] == 'chans']
  acc = {f: values(chans, 'test_accuracy', model__spatial_init=f) for f in ('random',) + others}
  if not all(acc.values()):
    return missing(rows, [f'chans {f}' for f, a in acc.items() if not a])
  parts, verdicts = [f'random {_mean(acc["random"])}'], []
  for family in others:
    delta, spread, verdict = decide(list(acc['random'].values()), list(acc[family].values()))
    parts.append(f'{family} {_mean(acc[family])} ({_delta(delta, spread)})')
    verdicts.append(verdict)
  return result('; '.join(parts), combine(verdicts),
                f'random above each of {", ".join(others)}; {RULE}')


def spectral(coverages):
  measured = ', '.join(f'{name} {value:.2f}' for name, value in coverages.items())
  agrees = all(coverages['random'] > coverages[f] for f in ('same', 'box'))
  return result(f'coverage {measured}', 'agrees' if agrees else 'disagrees',
                'deterministic (no seeds): the random bank covers more of the plane than same '
                'and box (a delta filter is flat, so identity covers all of it by construction)')


def width(rows, field='model.width_multiplier'):
  """The Full − Chans gap closes as width grows: the gap at the smallest width above the gap
  at the largest, per seed."""
  rows = plain(rows)
  widths = sorted({r[field] for r in rows})
  if len(widths) < 2:
    return not_measured('grid not run')
  acc = {(w, m): values(rows, 'test_accuracy', mode=m, **{field.replace('.', '__'): w})
         for w in widths for m in ('full', 'chans')}
  absent = [f'{m} ×{w}' for (w, m), a in acc.items() if not a]
  if absent:
    return missing(rows, absent)
  gaps = {w: _gaps(acc[w, 'full'], acc[w, 'chans']) for w in widths}
  if not all(gaps.values()):
    return not_measured('grid incomplete: no seed has both full and chans at every width')
  delta, spread, verdict = decide(gaps[widths[0]], gaps[widths[-1]])
  listed = ', '.join(f'×{w}: {100 * np.mean(g):+.1f} pp' for w, g in gaps.items())
  return result(f'Full − Chans {listed}; narrowest − widest {_delta(delta, spread)}', verdict,
                f'the Full − Chans gap at the narrowest width above that at the widest; {RULE}')


def robustness(rows, where=None):
  """Chans more robust than Full under FGSM and PGD-2 at ε = 1/255."""
  parts, verdicts = [], []
  for attack, label in ATTACK_NAMES.items():
    acc = {m: attacked(rows, attack, mode=m, **(where or {})) for m in ('full', 'chans')}
    if not all(acc.values()):
      return missing(rows, [f'attacked {m}' for m, a in acc.items() if not a])
    delta, spread, verdict = decide(list(acc['chans'].values()), list(acc['full'].values()))
    parts.append(f'{label}: full {_mean(acc["full"])}, chans {_mean(acc["chans"])} '
                 f'({_delta(delta, spread)})')
    verdicts.append(verdict)
  return result('; '.join(parts), combine(verdicts),
                f'Chans above Full under both attacks at ε = {CLAIM_EPSILON:g}/255; {RULE}')


def adversarial(plain_rows, trained_rows, where=None):
  """FGSM adversarial training closes the Chans − Full robustness gap: |gap| without above
  |gap| with, per seed."""
  parts, verdicts = [], []
  for attack, label in ATTACK_NAMES.items():
    gaps = []
    for rows in (plain_rows, trained_rows):
      acc = {m: attacked(rows, attack, mode=m, **(where or {})) for m in ('full', 'chans')}
      gaps.append(_gaps(acc['chans'], acc['full']))
    if not all(gaps):
      return missing(trained_rows, ['attacked full and chans, plain and FGSM-trained,'])
    delta, spread, verdict = decide([abs(g) for g in gaps[0]], [abs(g) for g in gaps[1]])
    parts.append(f'{label}: Chans − Full {100 * np.mean(gaps[0]):+.1f} pp without, '
                 f'{100 * np.mean(gaps[1]):+.1f} pp with ({_delta(delta, spread)} in |gap|)')
    verdicts.append(verdict)
  return result('; '.join(parts), combine(verdicts),
                f'|Chans − Full| under attack smaller with adversarial training, both attacks; '
                f'{RULE}')


def smoothing(rows):
  """Smoothed frozen random filters make Chans more robust than plain random ones."""
  chans = [r for r in rows if r.get('mode') == 'chans' and 'attack' in r]
  sigmas = sorted({r['model.smooth_sigma'] for r in chans} - {0.0})
  parts, verdicts = [], []
  for attack, label in ATTACK_NAMES.items():
    base = attacked(chans, attack, model__smooth_sigma=0.0)
    if not base or not sigmas:
      return not_measured('grid not run')
    line = [f'plain {_mean(base)}']
    for sigma in sigmas:
      smooth = attacked(chans, attack, model__smooth_sigma=sigma)
      delta, spread, verdict = decide(list(smooth.values()), list(base.values()))
      line.append(f'σ={sigma:g} {_mean(smooth)} ({_delta(delta, spread)})')
      verdicts.append(verdict)
    parts.append(f'{label}: ' + ', '.join(line))
  return result('; '.join(parts), combine(verdicts),
                f'every smoothed bank above the plain random one, both attacks; {RULE}')


def unshuffle_share(rows):
  """Chans keeps ≥ 80 % of Full's PSNR gain over the scrambled input (per seed)."""
  rows = plain(rows)
  full, chans = (values(rows, 'test_psnr', mode=m) for m in ('full', 'chans'))
  scrambled = values(rows, 'scrambled_psnr', mode='full')
  seeds = sorted(set(full) & set(chans) & set(scrambled))
  if not seeds:
    return not_measured('grid not run')
  shares = [(chans[s] - scrambled[s]) / (full[s] - scrambled[s]) for s in seeds]
  delta, spread, verdict = decide_against(shares, UNSHUFFLE_SHARE)
  return result(f'PSNR full {_mean(full, 2)} dB, chans {_mean(chans, 2)} dB, scrambled '
                f'{np.mean(list(scrambled.values())):.2f} dB; Chans keeps '
                f'{100 * np.mean(shares):.0f}% of the gain', verdict,
                f'Chans\' share of Full\'s PSNR gain above {100 * UNSHUFFLE_SHARE:.0f}%; {RULE}')


def unshuffle_growth(rows, field='model.kernel_size', mode='chans'):
  """PSNR grows with kernel size (Chans), though its parameter count does not."""
  rows = [r for r in plain(rows) if r['mode'] == mode]
  sizes = sorted({r[field] for r in rows})
  if len(sizes) < 2:
    return not_measured('grid not run')
  psnr = {k: values(rows, 'test_psnr', **{field.replace('.', '__'): k}) for k in sizes}
  delta, spread, verdict = decide(list(psnr[sizes[-1]].values()),
                                  list(psnr[sizes[0]].values()))
  listed = ', '.join(f'{k}: {np.mean(list(v.values())):.2f}' for k, v in psnr.items())
  return result(f'{mode} PSNR (dB) by {field.split(".")[-1]} {listed}; largest − smallest '
                f'{_delta(delta, spread, 1, "dB")}', verdict,
                f'{mode} PSNR at the largest {field.split(".")[-1]} above the smallest; {RULE}')
