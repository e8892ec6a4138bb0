"""GRID_DIR/strong_attacks.md from the cells' strong_attacks.json (`strong_attacks.py`): the
sanity checks every attack must pass, accuracy under each attack, the paper's robustness claim
(Chans more robust than Full at ε = 1/255) judged under each attack, and white-box against
transfer attacks as a test for gradient masking.

  python -m spatialmix_jax.study.strong_attack_report --workdir=GRID_DIR

Sanity checks, per cell (an attack that fails them is broken, or the model masks gradients):
  ε = 0 equals the clean accuracy on the same images, for every attack;
  accuracy does not rise with ε (a rise of more than one image is listed);
  PGD-20 and APGD are no weaker than FGSM at any ε (an excess of more than one image is listed);
  the accuracy at the largest ε, which reaches ≈ 0 for a model that does not mask gradients
  once ε is large.
Verdicts are read as the claims table reads a difference (`verdicts.py`, `significance.py`:
Welch t at α = 0.05 with the accuracy margin, 5 seeds an arm for the Fig. 6 claim). A model's robustness under several attacks is its lowest
accuracy among them; images crafted on Full are a white-box attack on Full, so they only add to
the attacks on Chans.
"""

import os
import sys

import numpy as np

from spatialmix_jax.infra import errors
from spatialmix_jax.study import records
from spatialmix_jax.study import significance
from spatialmix_jax.study import verdicts

CELL_RECORD = 'strong_attacks.json'  # written by strong_attacks.py
OUTPUT = 'strong_attacks.md'
NAMES = {'fgsm': 'FGSM', 'pgd': 'PGD (cell config)', 'pgd20': 'PGD-20', 'apgd': 'APGD-CE'}
MODES = ('full', 'chans', 'space')


def attack_name(attack):
  if attack.startswith('transfer_'):
    return f'transfer {NAMES.get(attack[len("transfer_"):], attack)} (crafted on Full)'
  return NAMES.get(attack, attack)


def load(workdir):
  """{cell: record} of every cell with a strong_attacks.json."""
  found = {}
  for name in sorted(os.listdir(workdir)):
    record = records.read_json(os.path.join(workdir, name, CELL_RECORD))
    if record is not None:
      found[name] = record
  return found


def _curve(record, attack):
  accuracy = record['attacks'][attack]['accuracy']
  labels = sorted(accuracy, key=float)
  return labels, np.array([accuracy[label] for label in labels])


def sanity(record, attack):
  """{check: (passed or None, shown value)} of one attack on one cell."""
  one_image = 1.0 / record['num_examples'] + 1e-9
  labels, values = _curve(record, attack)
  checks = {}
  if '0' in labels:
    at_zero = values[labels.index('0')]
    checks['ε = 0 equals clean'] = (bool(at_zero == record['clean_accuracy']),
                                    f'{at_zero:.4f}')
  rise = float(np.max(np.diff(values), initial=0.0))
  checks['non-increasing in ε'] = (bool(rise <= one_image), f'largest rise {100 * rise:+.1f} pp')
  if attack in ('pgd20', 'apgd') and 'fgsm' in record['attacks']:
    fgsm_labels, fgsm = _curve(record, 'fgsm')
    excess = max((values[labels.index(l)] - fgsm[fgsm_labels.index(l)]
                  for l in labels if l in fgsm_labels), default=0.0)
    checks['≤ FGSM'] = (bool(excess <= one_image), f'largest excess {100 * excess:+.1f} pp')
  checks['at the largest ε'] = (None, f'{values[-1]:.4f} at {labels[-1]}/255')
  return checks


def _sanity_table(found):
  columns = ('ε = 0 equals clean', 'non-increasing in ε', '≤ FGSM', 'at the largest ε')
  lines = ['| cell | attack | clean | ' + ' | '.join(columns) + ' |',
           '|' + '---|' * (len(columns) + 3)]
  for name, record in found.items():
    for attack in _ordered(record['attacks']):
      checks = sanity(record, attack)
      shown = []
      for column in columns:
        if column not in checks:
          shown.append('—')
          continue
        passed, value = checks[column]
        shown.append(value if passed is None else
                     f'{"yes" if passed else "**no**"} ({value})')
      lines.append(f'| {name} | {attack_name(attack)} | {record["clean_accuracy"]:.4f} | '
                   + ' | '.join(shown) + ' |')
  return '\n'.join(lines)


def _ordered(attacks):
  def key(attack):
    base = attack[len('transfer_'):] if attack.startswith('transfer_') else attack
    return (attack.startswith('transfer_'), list(NAMES).index(base) if base in NAMES
            else len(NAMES), attack)
  return sorted(attacks, key=key)


def _attacks(found):
  """Every attack any cell of `found` has, in the report's order."""
  return _ordered({a for r in found.values() for a in r['attacks']})


def _per_seed(found, mode, attack, label):
  return {r['seed']: r['attacks'][attack]['accuracy'][label] for r in found.values()
          if r['mode'] == mode and attack in r['attacks']
          and label in r['attacks'][attack]['accuracy']}


def _lowest(found, mode, attacks, label):
  """{seed: the lowest accuracy of `attacks` (those the cell has) at ε = `label`}."""
  lowest = {}
  for attack in attacks:
    for seed, value in _per_seed(found, mode, attack, label).items():
      lowest[seed] = min(value, lowest.get(seed, value))
  return lowest


def _not_measured(why):
  return {'measured': why, 'verdict': 'not measured', 'rule': '—'}


def _difference(higher, lower, min_seeds):
  """(Reading, its description) of mean(higher) > mean(lower), read as the claims table reads
  a difference (`significance.read`: Welch t, the accuracy margin, `min_seeds` per arm)."""
  contrast = significance.welch(higher, lower)
  reading = significance.read(contrast, 'difference', verdicts.ACCURACY_MARGIN, min_seeds)
  return reading, verdicts.describe_reading(contrast, reading, 'attacked_accuracy',
                                            'difference', verdicts.ACCURACY_MARGIN)


def claim(found, attacks, label=None, min_seeds=verdicts.HEADLINE_SEEDS):
  """{measured, verdict, rule} of Chans above Full at ε = `label` (1/255 by default) under the
  strongest of `attacks` on each model and seed: a model is as robust as its lowest accuracy.
  A transfer attack (crafted on Full) only adds to Chans' list, since on Full it is a
  white-box one. The test is the claims table's for Fig. 6's headline cells."""
  label = label or f'{verdicts.CLAIM_EPSILON:g}'
  full = _lowest(found, 'full', attacks, label)
  chans = _lowest(found, 'chans', attacks, label)
  if not full or not chans:
    return _not_measured(f'no {"Full" if not full else "Chans"} cell attacked so at '
                         f'ε = {label}/255')
  seeds = sorted(set(full) & set(chans))
  reading, text = _difference([chans[s] for s in seeds], [full[s] for s in seeds], min_seeds)
  return {'measured': f'full {_fmt([full[s] for s in seeds])}, chans '
                      f'{_fmt([chans[s] for s in seeds])}; {text}; seeds {seeds}',
          'verdict': reading.verdict,
          'rule': f'Chans above Full at ε = {label}/255; '
                  + verdicts.test_name('difference', 'attacked_accuracy', min_seeds),
          'sizes': (len(seeds), len(seeds)),
          'cells': tuple(c for c, r in found.items()
                         if r['mode'] in ('full', 'chans') and r['seed'] in seeds)}


def claims(attacks):
  """[(row name, attacks)] the claim is judged under: each white-box attack, each with its
  transfer twin, and all of them at once."""
  rows = []
  for attack in attacks:
    if attack.startswith('transfer_'):
      continue
    rows.append((f'{NAMES.get(attack, attack)}, white-box', [attack]))
    if f'transfer_{attack}' in attacks:
      rows.append((f'{NAMES.get(attack, attack)}, white-box or crafted on Full (the lower)',
                   [attack, f'transfer_{attack}']))
  rows.append(('every attack above (the lowest)', list(attacks)))
  return rows


def table_entry(found, grid, min_seeds=verdicts.HEADLINE_SEEDS):
  """The claims table's entry (`verdicts.claim`'s keys) of Fig. 6's robustness claim under the
  attacks stronger than the paper's: one comparison per row of `claims` but plain FGSM (the
  paper's own attack, read on more images in the table's row above), each with its verdict in
  the measured text; the claim holds only if it holds under every one (`significance.combine`).
  `grid` prefixes the cell names, as the table names cells."""
  if not found:
    return verdicts.not_measured(f'no cell of {grid} attacked yet: python -m '
                                 f'spatialmix_jax.study.strong_attacks --workdir=.../{grid}')
  parts = []
  for name, attacks in claims(_attacks(found)):
    if attacks == ['fgsm']:
      continue
    result = claim(found, attacks, min_seeds=min_seeds)
    parts.append(verdicts.Part(
        result['verdict'], f'{name}: {result["measured"]} → {result["verdict"]}',
        result.get('sizes', ()), tuple(f'{grid}/{c}' for c in result.get('cells', ())),
        why_not=result['measured'] if result['verdict'] == 'not measured' else ''))
  return verdicts.claim(parts, verdicts.test_name('difference', 'attacked_accuracy', min_seeds)
                        + '; a model is as robust as its lowest accuracy under the attacks of '
                        'a comparison')


_MASKING = {'agrees': 'transfer stronger: a sign of gradient masking',
            'disagrees': 'white-box stronger: no sign of masking',
            'did not replicate': 'no difference beyond the margin: no sign of masking',
            'inconclusive': 'inconclusive'}


def masking(found, mode, attack, label=None, min_seeds=2):
  """{measured, verdict, rule} of the attack crafted on Full beating the white-box one for
  `mode` at ε = `label`: a transfer attack stronger than white-box is the mark of a masked
  gradient. Seeds are paired (the same images per seed), so 2 suffice to read a sign."""
  label = label or f'{verdicts.CLAIM_EPSILON:g}'
  white_box = _per_seed(found, mode, attack, label)
  transferred = _per_seed(found, mode, f'transfer_{attack}', label)
  seeds = sorted(set(white_box) & set(transferred))
  if not seeds:
    return _not_measured(f'{mode} not attacked both ways at ε = {label}/255')
  # Lower accuracy is the stronger attack: masking reads as white-box above transfer.
  reading, text = _difference([white_box[s] for s in seeds], [transferred[s] for s in seeds],
                              min_seeds)
  return {'measured': f'white-box {_fmt([white_box[s] for s in seeds])}, transfer '
                      f'{_fmt([transferred[s] for s in seeds])}; {text}; seeds {seeds}',
          'verdict': _MASKING[reading.verdict],
          'rule': f'white-box accuracy above transfer accuracy on {mode}; '
                  + verdicts.test_name('difference', 'attacked_accuracy', min_seeds)}


def _table(found, attacks):
  labels = sorted({l for r in found.values() for a in r['attacks'].values()
                   for l in a['accuracy']}, key=float)
  lines = ['| attack | mode | clean | ' + ' | '.join(f'ε={l}' for l in labels) + ' |',
           '|' + '---|' * (len(labels) + 3)]
  for attack in attacks:
    for mode in MODES:
      cells = [r for r in found.values() if r['mode'] == mode and attack in r['attacks']]
      if not cells:
        continue
      clean = [r['clean_accuracy'] for r in cells]
      row = [attack_name(attack), f'{mode} ({len(cells)} seed{"s" * (len(cells) > 1)})',
             _fmt(clean)]
      for label in labels:
        row.append(_fmt([r['attacks'][attack]['accuracy'][label] for r in cells
                         if label in r['attacks'][attack]['accuracy']]))
      lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def _fmt(values):
  if not values:
    return '—'
  if len(values) == 1:
    return f'{values[0]:.4f}'
  return f'{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}'


def _settings(found, attack):
  record = next(r for r in found.values() if attack in r['attacks'])
  settings = record['attacks'][attack]['settings']
  return ', '.join(f'{k} {v}' for k, v in sorted(settings.items())
                   if k not in ('source', 'source_step'))


def write(workdir):
  """Writes GRID_DIR/strong_attacks.md; returns its path."""
  found = load(workdir)
  if not found:
    raise errors.NoResultsError(f'No cell under {workdir!r} has {CELL_RECORD} yet: run python '
                     '-m spatialmix_jax.study.strong_attacks first.')
  attacks = _attacks(found)
  examples = sorted({r['num_examples'] for r in found.values()})
  steps = sorted({r['step'] for r in found.values()})
  lines = [f'# Stronger attacks: {os.path.basename(os.path.abspath(workdir))}', '',
           f'{len(found)} cells, the first {"/".join(map(str, examples))} test images each, '
           f'checkpoints at step {"/".join(map(str, steps))} (the end of their training); ε '
           'in units of 1/255. Written by `python -m spatialmix_jax.study.strong_attacks` from '
           'CELL/strong_attacks.json.', '', '## Attacks', '']
  lines += [f'- {attack_name(a)}: {_settings(found, a)}' for a in attacks]
  lines += ['', '## Accuracy under attack (mean ± std over seeds)', '', _table(found, attacks),
            '', f'## Chans more robust than Full at ε = {verdicts.CLAIM_EPSILON:g}/255, under '
            'each attack', '', 'A model is as robust as its lowest accuracy under the attacks '
            'of a row (an upper bound on the accuracy under all of them together). Images '
            'crafted on Full attack Full white-box, so they add to Chans\' attacks only.', '',
            '| attacks | measured | verdict | test |',
            '|---|---|---|---|']
  for name, names in claims(attacks):
    result = claim(found, names)
    lines.append(f'| {name} | {result["measured"]} | {result["verdict"]} | {result["rule"]} |')
  transferred = [a[len('transfer_'):] for a in attacks if a.startswith('transfer_')]
  if transferred:
    lines += ['', f'## Gradient masking: white-box against transfer at ε = '
              f'{verdicts.CLAIM_EPSILON:g}/255', '',
              '| mode | attack | measured | reading | test |', '|---|---|---|---|---|']
    for mode in MODES[1:]:
      for attack in transferred:
        result = masking(found, mode, attack)
        lines.append(f'| {mode} | {NAMES.get(attack, attack)} | {result["measured"]} | '
                     f'{result["verdict"]} | {result["rule"]} |')
  lines += ['', '## Sanity checks', '',
            'One image of slack in "non-increasing" and "≤ FGSM" (neither is guaranteed by the '
            'algorithms); "ε = 0 equals clean" is exact.', '', _sanity_table(found)]
  path = os.path.join(workdir, OUTPUT)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  try:
    print(f'Wrote {write(flags.FLAGS.workdir)}')
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'The grid folder with CELL/strong_attacks.json files.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
