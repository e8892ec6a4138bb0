"""The verdicts as statistics: Welch's test and TOST agree with scipy's t-tests, each of the
five verdicts comes out of rows built to give it, too few seeds read inconclusive whatever the
numbers, and only cells equal on every field but the one under test are compared."""

import numpy as np
import pytest
from scipy import stats

from spatialmix_jax.study import significance
from spatialmix_jax.study import verdicts

MARGIN = verdicts.ACCURACY_MARGIN


def _rows(accuracy, seeds, spread=0.001, **fields):
  """One clean row per (mode, seed): accuracy[mode] plus a seed-dependent wobble of SPREAD."""
  offsets = np.linspace(-spread, spread, seeds) if seeds > 1 else [0.0]
  return [{'mode': mode, 'seed': seed, 'optimizer.learning_rate': 0.1, **fields,
           'cell': f'mode-{mode}.seed-{seed}', 'frozen_unchanged': True,
           'test_accuracy': value + offsets[seed]}
          for mode, value in accuracy.items() for seed in range(seeds)]


def test_welch_contrast_matches_scipy_and_its_interval_is_the_t_interval():
  higher, lower = [0.71, 0.74, 0.72, 0.75], [0.69, 0.70, 0.72]
  contrast = significance.welch(higher, lower)
  expected = stats.ttest_ind(higher, lower, equal_var=False)
  assert contrast.p_two_sided() == pytest.approx(expected.pvalue, rel=1e-9)
  assert contrast.delta == pytest.approx(np.mean(higher) - np.mean(lower))
  low, high = contrast.interval(0.95)
  half = stats.t.ppf(0.975, contrast.df) * contrast.se
  assert (low, high) == pytest.approx((contrast.delta - half, contrast.delta + half))
  assert stats.ttest_ind(higher, lower, equal_var=False).df == pytest.approx(contrast.df)


def test_tost_on_a_constructed_case():
  # Two arms 0.2 points apart with a spread of ~0.2 points: equivalent within ±1.5 points.
  a = [0.700, 0.702, 0.698, 0.701, 0.699]
  b = [x - 0.002 for x in [0.701, 0.699, 0.700, 0.703, 0.697]]
  contrast = significance.welch(a, b)
  reading = significance.read(contrast, 'equivalence', MARGIN, 5)
  # TOST = two one-sided Welch tests: a − b > −margin and a − b < +margin.
  lower = stats.ttest_ind(np.add(a, MARGIN), b, equal_var=False, alternative='greater').pvalue
  upper = stats.ttest_ind(np.subtract(a, MARGIN), b, equal_var=False, alternative='less').pvalue
  assert reading.p == pytest.approx(max(lower, upper), rel=1e-9)
  assert reading.verdict == 'agrees' and reading.confidence == 0.90
  assert -MARGIN < reading.interval[0] < reading.interval[1] < MARGIN
  # 3 points apart with the same spread: significantly beyond the margin.
  far = significance.welch(a, [x - 0.03 for x in b])
  assert significance.read(far, 'equivalence', MARGIN, 5).verdict == 'disagrees'
  # 1 point apart with a spread of several points: neither shown equal nor shown apart.
  noisy = significance.welch([0.70, 0.75, 0.66, 0.72, 0.68], [0.69, 0.64, 0.73, 0.66, 0.71])
  assert significance.read(noisy, 'equivalence', MARGIN, 5).verdict == 'inconclusive'
  # Equivalent numbers on two seeds an arm: too few for any verdict but inconclusive.
  few = significance.welch(a[:2], b[:2])
  assert significance.read(few, 'equivalence', MARGIN, 3).reason == 'n < 3'


def test_non_inferiority_is_one_sided():
  plain = [0.630, 0.628, 0.629, 0.631]
  slightly_worse = [x - 0.004 for x in plain]  # 0.4 points below: not hurt beyond 1.5
  much_worse = [x - 0.03 for x in plain]  # 3 points below
  read = lambda a: significance.read(significance.welch(a, plain), 'non-inferiority', MARGIN, 3)
  assert read(slightly_worse).verdict == 'agrees'
  assert read(much_worse).verdict == 'disagrees'
  assert read([x + 0.02 for x in plain]).verdict == 'agrees'  # better is not worse


def test_each_verdict_kind_from_hand_built_rows():
  agrees = verdicts.space_lags(_rows({'full': 0.70, 'chans': 0.69, 'space': 0.55}, seeds=5))
  assert agrees['verdict'] == 'agrees'
  assert '95 % CI' in agrees['measured'] and agrees['seeds'] == '5 per arm'
  disagrees = verdicts.space_lags(_rows({'full': 0.60, 'chans': 0.61, 'space': 0.70}, seeds=5))
  assert disagrees['verdict'] == 'disagrees'
  # "same" filters level with random ones to within 0.1 point over 5 seeds: no effect.
  level = [dict(r, **{'model.spatial_init': r['mode'] == 'full' and 'random' or 'same',
                      'mode': 'chans'})
           for r in _rows({'full': 0.6803, 'chans': 0.680}, seeds=5)]
  replicated = verdicts.families(level, others=('same',))
  assert replicated['verdict'] == 'did not replicate', replicated['measured']
  # A 15-point gap on 2 seeds: the test is significant but n < 5 leaves it inconclusive.
  few = verdicts.space_lags(_rows({'full': 0.70, 'chans': 0.69, 'space': 0.55}, seeds=2))
  assert few['verdict'] == 'inconclusive' and 'n < 5' in few['measured']
  assert few['seeds'] == '2 per arm'
  # Five seeds with a spread of 8 points around a 1-point gap: no power either way.
  noisy = verdicts.space_lags(_rows({'full': 0.70, 'chans': 0.70, 'space': 0.69}, seeds=5,
                                    spread=0.04))
  assert noisy['verdict'] == 'inconclusive' and 'CI reaches past the margin' in noisy['measured']
  missing = verdicts.space_lags(_rows({'full': 0.70, 'chans': 0.69}, seeds=5))
  assert missing['verdict'] == 'not measured'
  assert 'no finished mode=space cell yet' in missing['measured']
  assert verdicts.space_lags([])['measured'] == 'grid not run'


def test_a_claim_of_several_comparisons_takes_the_verdict_that_settles_most():
  assert significance.combine(['agrees', 'agrees']) == 'agrees'
  assert significance.combine(['agrees', 'inconclusive']) == 'inconclusive'
  assert significance.combine(['agrees', 'not measured']) == 'not measured'
  assert significance.combine(['agrees', 'did not replicate', 'inconclusive']) == (
      'did not replicate')
  assert significance.combine(['did not replicate', 'disagrees']) == 'disagrees'


def test_only_cells_equal_on_every_other_field_are_compared():
  chans = _rows({'chans': 0.70}, seeds=5)
  space_other_lr = _rows({'space': 0.50}, seeds=5, **{'optimizer.learning_rate': 0.05})
  groups, why = verdicts.matched(chans + space_other_lr, 'test_accuracy',
                                 [{'mode': 'chans'}, {'mode': 'space'}])
  assert groups is None and 'optimizer.learning_rate' in why
  # Space cells at chans' learning rate join: they, and only they, are compared.
  space_same_lr = _rows({'space': 0.60}, seeds=5)
  groups, _ = verdicts.matched(chans + space_other_lr + space_same_lr, 'test_accuracy',
                               [{'mode': 'chans'}, {'mode': 'space'}])
  assert np.mean([r['test_accuracy'] for r in groups[1].values()]) == pytest.approx(0.60)
  # Seeds, cell names and the integrity flag never keep cells apart.
  flagged = [dict(r, frozen_unchanged=False, cell='x') for r in space_same_lr]
  groups, _ = verdicts.matched(chans + flagged, 'test_accuracy',
                               [{'mode': 'chans'}, {'mode': 'space'}])
  assert len(groups[1]) == 5
  # Two complete sets of cells the claim does not tell apart: its definition is at fault.
  chans_other_lr = _rows({'chans': 0.65}, seeds=5, **{'optimizer.learning_rate': 0.05})
  with pytest.raises(RuntimeError, match='optimizer.learning_rate'):
    verdicts.matched(chans + chans_other_lr + space_other_lr + space_same_lr, 'test_accuracy',
                     [{'mode': 'chans'}, {'mode': 'space'}])


def test_attacked_and_clean_rows_are_not_mixed():
  clean = _rows({'chans': 0.70, 'full': 0.70}, seeds=3)
  attacked = [dict(r, attack='fgsm', epsilon=1.0, attacked_accuracy=0.4 if
                   r['mode'] == 'chans' else 0.3) for r in clean]
  groups, _ = verdicts.matched(clean + attacked, 'test_accuracy',
                               [{'mode': 'chans'}, {'mode': 'full'}])
  assert all('attack' not in r for g in groups for r in g.values())
  result = verdicts.robustness(clean + attacked, min_seeds=3)
  assert result['verdict'] == 'not measured'  # the rows have FGSM only, no PGD
  assert 'FGSM: Chans − Full: chans 0.4000' in result['measured']
