"""Statistical tests of the paper's claims on per-seed results, and the verdict each reads.

Every comparison is a contrast θ = Σ wᵢ · mean(groupᵢ) + offset of independent groups of
per-seed values (two arms: w = (1, −1)), with Welch's standard error √(Σ wᵢ² sᵢ² / nᵢ) and
Welch–Satterthwaite degrees of freedom, so groups need not share a variance or a size. Three
kinds of claim read it, all at α = 0.05:

  difference       the claim is θ > 0. Two-sided Welch t-test, 95 % CI of θ. Significant and
                   θ > 0: agrees; significant and θ < 0: disagrees; not significant with the
                   95 % CI inside ±margin: did not replicate (the data rule out an effect of
                   the margin's size); otherwise inconclusive.
  equivalence      the claim is |θ| < margin (near-equality). TOST: two one-sided Welch tests,
                   90 % CI of θ. Both reject: agrees; θ significantly beyond the margin on
                   one side (one-sided, α = 0.05): disagrees; otherwise inconclusive.
  non-inferiority  the claim is θ > −margin ("without hurting", "almost as well"). One-sided
                   Welch test, 90 % CI of θ. Significant: agrees; θ significantly below
                   −margin: disagrees; otherwise inconclusive.

A group with fewer seeds than the claim asks for (3, or 5 for the headline claims) makes the
comparison inconclusive whatever the test says; its numbers are still shown.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

ALPHA = 0.05
KINDS = ('difference', 'equivalence', 'non-inferiority')
# The verdicts, from the one that settles a claim made of several comparisons to the one that
# settles least (`combine`).
VERDICTS = ('disagrees', 'did not replicate', 'not measured', 'inconclusive', 'agrees')


@dataclasses.dataclass(frozen=True)
class Contrast:
  """θ = Σ wᵢ·mean(groupᵢ) + offset with its Welch standard error and degrees of freedom
  (both nan when a group has fewer than two values: no spread to judge by)."""
  delta: float
  se: float
  df: float
  sizes: tuple

  def _t(self, bound):
    """t statistic of θ against `bound`; ±inf when no group varies (se 0)."""
    if self.se == 0:
      gap = self.delta - bound
      return math.copysign(math.inf, gap) if gap else 0.0
    return (self.delta - bound) / self.se

  def p_above(self, bound=0.0):
    """One-sided p of H0: θ ≤ bound against θ > bound."""
    if math.isnan(self.se):
      return math.nan
    return float(stats.t.sf(self._t(bound), self.df)) if self.se else float(
        self._t(bound) <= 0)

  def p_below(self, bound=0.0):
    """One-sided p of H0: θ ≥ bound against θ < bound."""
    if math.isnan(self.se):
      return math.nan
    return float(stats.t.cdf(self._t(bound), self.df)) if self.se else float(
        self._t(bound) >= 0)

  def p_two_sided(self, value=0.0):
    if math.isnan(self.se):
      return math.nan
    return min(1.0, 2 * min(self.p_above(value), self.p_below(value)))

  def interval(self, confidence):
    """(low, high): the two-sided `confidence` interval of θ."""
    if math.isnan(self.se):
      return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, self.df) * self.se if self.se else 0.0
    return self.delta - half, self.delta + half


def contrast(groups, weights, offset=0.0):
  """The Contrast Σ wᵢ·mean(groupᵢ) + offset of independent groups of per-seed values."""
  if len(groups) != len(weights) or not all(len(g) for g in groups):
    raise ValueError(f'{len(weights)} weights for groups of sizes {[len(g) for g in groups]}: '
                     'every group needs a value and a weight.')
  groups = [np.asarray(g, np.float64) for g in groups]
  delta = float(sum(w * g.mean() for w, g in zip(weights, groups)) + offset)
  sizes = tuple(len(g) for g in groups)
  if min(sizes) < 2:
    return Contrast(delta, math.nan, math.nan, sizes)
  # Welch–Satterthwaite: each group's share of the variance of θ, and its degrees of freedom.
  shares = [w * w * g.var(ddof=1) / len(g) for w, g in zip(weights, groups)]
  variance = sum(shares)
  if variance == 0:
    return Contrast(delta, 0.0, math.inf, sizes)
  df = variance ** 2 / sum(s * s / (len(g) - 1) for s, g in zip(shares, groups))
  return Contrast(delta, math.sqrt(variance), df, sizes)


def welch(higher, lower):
  """The Contrast mean(higher) − mean(lower)."""
  return contrast([higher, lower], [1.0, -1.0])


@dataclasses.dataclass(frozen=True)
class Reading:
  """What one comparison says: its verdict, the p-value the verdict rests on, the interval
  shown and why the verdict is what it is when the test alone does not decide it."""
  verdict: str
  p: float
  interval: tuple
  confidence: float
  reason: str = ''


def confidence(kind):
  """The confidence of the interval a claim of KIND shows: 1 − α for the two-sided test of a
  difference, 1 − 2α for one-sided tests (TOST's two included), whose α-level rejections are
  exactly the intervals that clear their bound."""
  return 1 - ALPHA if kind == 'difference' else 1 - 2 * ALPHA


def _too_few(contrast_, min_seeds):
  return min(contrast_.sizes) < min_seeds


def read(contrast_, kind, margin, min_seeds):
  """The Reading of a claim of KIND (see the module docstring) on `contrast_`."""
  if kind not in KINDS:
    raise ValueError(f'Unknown kind of claim {kind!r}; choose one of {KINDS}.')
  if kind == 'difference':
    p = contrast_.p_two_sided()
  elif kind == 'equivalence':
    p = max(contrast_.p_above(-margin), contrast_.p_below(margin))
  else:
    p = contrast_.p_above(-margin)
  level = confidence(kind)
  interval = contrast_.interval(level)
  if _too_few(contrast_, min_seeds):
    return Reading('inconclusive', p, interval, level, f'n < {min_seeds}')
  if kind == 'difference':
    if p < ALPHA:
      return Reading('agrees' if contrast_.delta > 0 else 'disagrees', p, interval, level)
    if -margin < interval[0] and interval[1] < margin:
      return Reading('did not replicate', p, interval, level, 'CI inside the margin')
    return Reading('inconclusive', p, interval, level, 'CI reaches past the margin')
  if p < ALPHA:
    return Reading('agrees', p, interval, level)
  beyond = contrast_.p_below(-margin)
  if kind == 'equivalence':
    beyond = min(beyond, contrast_.p_above(margin))
  if beyond < ALPHA:
    return Reading('disagrees', p, interval, level, 'significantly beyond the margin')
  return Reading('inconclusive', p, interval, level, 'neither within nor beyond the '
                 'margin')


def combine(verdicts):
  """The verdict of a claim made of several comparisons: the first of VERDICTS that any of
  them reads (a claim agrees only when every part does)."""
  if not verdicts:
    return 'not measured'
  return min(verdicts, key=VERDICTS.index)
