"""Figures redrawn without a verdict (Figs. 9 and 11), and the headline cells' kept checkpoints."""

import json
import os

import pytest

from conftest import REPO_ROOT
from spatialmix_jax.study import reproduced_figures

FIG6_MODES = os.path.join(REPO_ROOT, 'docs', 'results', 'paper_cifar10', 'fig6_modes')


def _coverage(folder, layers):
  os.makedirs(os.path.join(folder, 'spectral'))
  with open(os.path.join(folder, 'spectral', 'coverage.json'), 'w') as f:
    json.dump({'trained_layers': {name: {'coverage': value, 'filters': 9}
                                  for name, value in layers.items()}}, f)


def test_fig9_pairs_a_full_cell_with_the_chans_cell_of_its_seed(tmp_path):
  grid = tmp_path / 'results' / reproduced_figures.FIG6_MODES
  _coverage(grid / 'mode-full.seed-3', {'conv0': 0.7, 'conv1': 0.95})
  _coverage(grid / 'mode-chans.seed-3', {'conv0': 1.0, 'conv1': 0.9})
  _coverage(grid / 'mode-full.seed-4', {'conv0': 0.5})  # no chans partner: left out
  pairs = reproduced_figures.learned_filter_pairs(str(tmp_path / 'results'))
  assert [seed for seed, _, _ in pairs] == [3]
  lines = reproduced_figures.section(str(tmp_path / 'results'))
  assert '| 3 | conv0 | 9 | 0.70 | 1.00 |' in lines
  assert not any('![' in line for line in lines)  # no drawings beside this report
  (tmp_path / 'figures').mkdir()
  (tmp_path / 'figures' / 'fig9_full_seed3.png').write_bytes(b'png')
  lines = reproduced_figures.section(str(tmp_path / 'results'))
  assert '![Envelopes of the learned filters, Full, seed 3](figures/fig9_full_seed3.png)' in lines
  assert reproduced_figures.section(str(tmp_path / 'empty')) == []


@pytest.mark.parametrize('mode', ['full', 'chans'])
def test_a_kept_headline_checkpoint_restores_and_its_frozen_filters_are_its_init(mode):
  """The committed final checkpoint of a fig6_modes cell is enough to attack it again."""
  from spatialmix_jax.config import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  cells = sorted(n for n in os.listdir(FIG6_MODES) if n.startswith(f'mode-{mode}.')
                 and os.path.isdir(os.path.join(FIG6_MODES, n, 'checkpoints')))
  assert cells, 'no fig6_modes cell keeps its checkpoint'
  workdir = os.path.join(FIG6_MODES, cells[0])
  config = evaluation.load_saved_config(workdir)
  experiment = experiment_lib.create_experiment(config)
  state, step = evaluation.restore_for_eval(config, workdir, experiment)
  with open(os.path.join(workdir, 'results.json')) as f:
    assert step == json.load(f)['step']
  # No data needed: the frozen check compares the restored weights with the run's start.
  record = evaluation.summary(experiment, state, {'loss': 0.0, 'count': 0, 'accuracy': 0.0},
                              step, 0.0, workdir=workdir)
  assert record['frozen_unchanged'] is True
  assert record['frozen_collections'] == (['spatial'] if mode == 'chans' else [])
