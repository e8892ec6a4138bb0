"""Sweeps and reports: grid configs expand into valid cells; a 2-cell digits sweep runs,
resumes by skipping, and its report writes PNG / CSV / Markdown."""

import csv
import importlib
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.study import records
from spatialmix_jax.study import report
from spatialmix_jax.study import sweep

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRIDS = sorted(name[:-3] for name in os.listdir(os.path.join(REPO_ROOT, 'configs', 'sweeps'))
               if name.endswith('.py') and not name.startswith('_'))
# Paper grids take '' (paper scale) or 'small'; a grid module may name its own variants.
GRID_VARIANTS = [
    (name, variant) for name in GRIDS
    for variant in getattr(importlib.import_module(f'configs.sweeps.{name}'), 'VARIANTS',
                           ('', 'small'))]


def test_every_paper_grid_is_shipped():
  assert {'modes_digits', 'resnet_depth', 'families', 'width', 'convmixer_depth', 'kernel_size',
          'robustness', 'smooth', 'unshuffle_size'} <= set(GRIDS)


@pytest.mark.parametrize('name,variant', GRID_VARIANTS)
def test_grid_configs_expand_into_valid_distinct_cells(name, variant):
  module = importlib.import_module(f'configs.sweeps.{name}')
  grid = module.get_config(variant)
  cells = sweep.cells(grid)
  assert len(cells) >= 2
  for _, config, overrides in cells:
    experiment_lib.validate_config(config)
    for key, value in overrides.items():
      node = config
      for part in key.split('.'):
        node = node[part]
      assert node == value
  if variant == 'small':
    for _, config, _ in cells:
      assert config.dataset == 'digits'  # CPU-sized: no download, tiny images


def test_unknown_variant_and_unknown_field_are_one_line_errors():
  from configs.sweeps import width  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="choose one of \\('', 'small'\\)"):
    width.get_config('tiny')
  grid = width.get_config('small')
  grid.axes = [[{'model.widht': 8}]]
  with pytest.raises(ValueError, match='widht') as error:
    sweep.cells(grid)
  assert '\n' not in str(error.value)
  with pytest.raises(ValueError, match='Unknown figure'):
    report.write_report('/nonexistent', ['fig99'])


def _two_cell_grid(tiny_config):
  config = tiny_config
  config.num_train_steps = 4
  config.checkpoint_every_steps = 4
  config.eval.attacks = 'fgsm'
  config.eval.epsilons = '0,8'
  grid = ml_collections.ConfigDict()
  grid.name = 'two_cells'
  grid.base = config
  grid.axes = [[{'mode': 'full'}, {'mode': 'chans'}]]
  return grid


def test_two_cell_sweep_runs_resumes_and_reports(tiny_config, tmp_path):
  grid = _two_cell_grid(tiny_config)
  assert sweep.run(grid, str(tmp_path)) == {'mode-full': 'ran', 'mode-chans': 'ran'}
  for cell in ('mode-full', 'mode-chans'):
    assert (tmp_path / cell / 'results.json').exists()
    assert (tmp_path / cell / 'eval.json').exists()
  assert sweep.run(grid, str(tmp_path)) == {'mode-full': 'skipped', 'mode-chans': 'skipped'}

  written = report.write_report(str(tmp_path))
  assert written == ['fig6_7_robustness', 'summary']
  out = tmp_path / 'report'
  for name in ('fig6_7_robustness.png', 'summary.png'):
    assert (out / name).read_bytes()[:4] == b'\x89PNG'
  with open(out / 'summary.csv') as f:
    rows = list(csv.DictReader(f))
  assert sorted(r['mode'] for r in rows) == ['chans', 'full']
  assert all(0.0 <= float(r['test_accuracy_mean']) <= 1.0 for r in rows)
  with open(out / 'fig6_7_robustness.csv') as f:
    robustness = list(csv.DictReader(f))
  assert len(robustness) == 4  # 2 modes x 2 epsilons, one attack
  markdown = (out / 'report.md').read_text()
  assert '# Sweep report: two_cells' in markdown and '| mode |' in markdown
  assert '2 finished cells' in markdown and '(of 2 in the grid)' in markdown


def test_report_groups_seeds_into_mean_and_std():
  rows = [{'mode': 'full', 'seed': s, 'test_accuracy': a} for s, a in ((0, 0.5), (1, 0.7))]
  stats = records.group(rows, ['mode'], 'test_accuracy')
  mean, std, n = stats[('full',)]
  assert (mean, n) == (pytest.approx(0.6), 2)
  assert std == pytest.approx(0.1414213, rel=1e-5)  # sample std over seeds


def test_unknown_grid_on_the_command_line_is_a_one_line_error(tmp_path):
  completed = subprocess.run(
      [sys.executable, '-m', 'spatialmix_jax.study.sweep', '--config=configs/sweeps/nope.py',
       f'--workdir={tmp_path}'],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, timeout=120, check=False)
  assert completed.returncode == 2
  last = completed.stderr.strip().splitlines()[-1]
  assert last.startswith('error: Cannot load grid config') and 'modes_digits' in last


def _fake_cell(workdir, name, **fields):
  model = {'depth': 4, 'width': fields.pop('width'), 'kernel_size': 5, 'spatial_init': 'random',
           'smooth_sigma': 1.0}
  results = {'model_config': model, 'dataset': 'digits', 'task': 'unshuffle',
             'model': 'unshuffle_convmixer', **fields}
  os.makedirs(workdir / name)
  (workdir / name / 'results.json').write_text(json.dumps(results))


def test_report_draws_psnr_against_width_with_the_scrambled_baseline(tmp_path):
  for width in (16, 32):
    for mode in ('full', 'chans'):
      for seed in (0, 1):
        _fake_cell(tmp_path, f'{width}-{mode}-{seed}', width=width, mode=mode, seed=seed,
                   test_psnr=10.0 + width / 8 + seed + (mode == 'full'), scrambled_psnr=5.0)
  assert report.write_report(str(tmp_path)) == ['fig10_unshuffle_width', 'summary']
  with open(tmp_path / 'report' / 'fig10_unshuffle_width.csv') as f:
    rows = {(r['mode'], r['width']): r for r in csv.DictReader(f)}
  assert len(rows) == 4
  assert float(rows[('full', '32')]['test_psnr_mean']) == pytest.approx(15.5)
  assert float(rows[('chans', '16')]['test_psnr_mean']) == pytest.approx(12.5)
  assert rows[('chans', '16')]['n'] == '2'
  markdown = (tmp_path / 'report' / 'report.md').read_text()
  assert '| mode=chans | 12.50 ± 0.71 | 14.50 ± 0.71 |' in markdown
