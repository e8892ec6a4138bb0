"""Budget-curve gaps: Welch intervals over seeds, the sign of each gap, the figure."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from spatialmix_jax.study import curves


def test_welch_interval_is_scipys_welch_interval():
  a, b = [0.61, 0.64, 0.60], [0.55, 0.59, 0.52, 0.57]
  delta, low, high = curves.welch_interval(a, b)
  reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  assert delta == pytest.approx(np.mean(a) - np.mean(b))
  assert (low, high) == pytest.approx((reference.low, reference.high))
  assert curves.welch_interval([0.5], [0.4, 0.41])[1:] == (None, None)


def _cell(root, mode, seed, points):
  folder = os.path.join(root, f'mode-{mode}.seed-{seed}')
  os.makedirs(folder)
  with open(os.path.join(folder, 'config.json'), 'w') as f:
    json.dump({'mode': mode, 'seed': seed}, f)
  with open(os.path.join(folder, 'curve.json'), 'w') as f:
    json.dump({'points': points}, f)


def _point(epoch, clean, fgsm):
  return {'epoch': epoch, 'step': int(epoch * 390), 'test_accuracy': clean,
          'robustness': {'fgsm': {'1': fgsm}}}


def test_gaps_read_full_minus_chans_clean_and_chans_minus_full_attacked(tmp_path):
  for seed, noise in enumerate((0.0, 0.01, -0.01)):
    _cell(tmp_path, 'full', seed, [_point(2, 0.60 + noise, 0.30), _point(4, 0.70 + noise, 0.35)])
    _cell(tmp_path, 'chans', seed, [_point(2, 0.58 + noise, 0.33 + noise),
                                    _point(4, 0.69 + noise, 0.36)])
  os.makedirs(tmp_path / 'unfinished')  # no curve.json: ignored
  rows = curves.gap_table(curves.load(str(tmp_path)))
  clean = {r['epoch']: r for r in rows if r['gap'].startswith('clean')}
  fgsm = {r['epoch']: r for r in rows if r['gap'].startswith('FGSM')}
  assert clean[2]['delta'] == pytest.approx(0.02) and clean[4]['delta'] == pytest.approx(0.01)
  assert fgsm[2]['delta'] == pytest.approx(0.03) and fgsm[4]['delta'] == pytest.approx(0.01)
  assert clean[2]['n_full'] == clean[2]['n_chans'] == 3
  assert not any(r['gap'].startswith('PGD') for r in rows)  # no PGD in these curves
  assert (fgsm[4]['low'], fgsm[4]['high']) == pytest.approx((0.01, 0.01))  # no spread
  text = curves.markdown(rows)
  assert 'not shorter schedules' in text and '| 4 | +1.0 |' in text
  curves.figure(rows, str(tmp_path / 'curve.png'))
  assert (tmp_path / 'curve.png').stat().st_size > 0


def test_the_reproduction_report_draws_the_budget_curve_once_its_grid_has_cells(tmp_path):
  from spatialmix_jax.study import reproduction  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'report'
  out.mkdir()
  assert reproduction.budget_section(str(tmp_path), str(out), 'report/') == []  # no grid yet
  grid = tmp_path / 'paper_cifar10' / 'budget_curve'
  for seed in (0, 1):
    _cell(grid, 'full', seed, [_point(2, 0.60 + 0.01 * seed, 0.30)])
    _cell(grid, 'chans', seed, [_point(2, 0.58 + 0.01 * seed, 0.33)])
  section = '\n'.join(reproduction.budget_section(str(tmp_path), str(out), 'report/'))
  assert '![budget_curve](report/budget_curve.png)' in section
  assert '| clean accuracy, Full − Chans (Fig. 2) | 2 | +2.0 |' in section
  assert (out / 'budget_curve.png').stat().st_size > 0
