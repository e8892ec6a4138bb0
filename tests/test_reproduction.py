"""The reproduction report: verdicts follow the numbers and their seed noise, missing grids say
so, cells that differ in any config field stay apart, architecture tags depend on the figure,
a cell whose frozen weights changed is flagged, the paper's PGD is what it says, and the
committed docs/reproduction.md is what the report command writes from the committed records."""

import json
import os
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from configs.sweeps import paper_cifar10
from configs.sweeps import repro_cifar10
from spatialmix_jax.objectives import attacks
from spatialmix_jax.study import records
from spatialmix_jax.study import reproduction
from spatialmix_jax.study import sweep
from spatialmix_jax.study import verdicts

REPO = pathlib.Path(__file__).resolve().parent.parent
COMMITTED = 'docs/results'


def _write_grid(workdir, module, variant, metrics, seeds=None, frozen_unchanged=True):
  """Cells of the real grid config with made-up metrics: metrics(overrides) -> (results, eval);
  SEEDS replaces the grid's own seeds axis."""
  grid = module.get_config(variant)
  if seeds is not None:
    assert all('seed' in choice for choice in grid.axes[-1])  # the seeds axis comes last
    grid.axes = list(grid.axes[:-1]) + [[{'seed': s} for s in range(seeds)]]
  folder = workdir / module.__name__.split('.')[-1] / variant
  for name, config, overrides in sweep.cells(grid):
    celldir = folder / name
    celldir.mkdir(parents=True)
    results, evaluated = metrics(overrides)
    record = {'model_config': config.model.to_dict(), 'dataset': config.dataset,
              'task': config.task, 'model': config.model.name, 'mode': config.mode,
              'seed': config.seed, 'step': 300, 'wall_time_s': 60.0,
              'frozen_unchanged': frozen_unchanged, **results}
    (celldir / 'results.json').write_text(json.dumps(record))
    (celldir / 'config.json').write_text(json.dumps(config.to_dict()))
    if evaluated is not None:
      (celldir / 'eval.json').write_text(json.dumps({**record, **evaluated}))


def _classification(accuracy, attacked, seed_step=0.001):
  def metrics(overrides):
    key = overrides.get('model.spatial_init', overrides['mode'])
    clean = accuracy[key] + seed_step * overrides['seed']
    robustness = {a: {'0': clean, '1': attacked[key] + seed_step * overrides['seed']}
                  for a in ('fgsm', 'pgd')}
    return {'test_accuracy': clean}, {'robustness': robustness, 'wall_time_s': 30.0}
  return metrics


def _verdicts(claims, figure, claim_start=''):
  return {c['grids']: c['verdict'] for c in claims
          if c['figure'] == figure and c['claim'].startswith(claim_start)}


def test_verdicts_follow_the_numbers_and_missing_grids_are_not_measured(tmp_path):
  paper_like = _classification({'full': 0.700, 'chans': 0.695, 'space': 0.50},
                               {'full': 0.30, 'chans': 0.40, 'space': 0.20})
  agree = tmp_path / 'agrees'
  _write_grid(agree, repro_cifar10, 'convmixer_modes', paper_like, seeds=5)
  _write_grid(agree, paper_cifar10, 'fig6_modes', paper_like, seeds=5)
  _write_grid(agree, paper_cifar10, 'fig3_families', _classification(
      {'same': 0.55, 'box': 0.45, 'identity': 0.44}, {'same': 0, 'box': 0, 'identity': 0}),
              seeds=5)
  _write_grid(agree, paper_cifar10, 'fig6_adversarial', _classification(
      {'full': 0.60, 'chans': 0.60, 'space': 0.5}, {'full': 0.380, 'chans': 0.385,
                                                    'space': 0.3}), seeds=3)
  claims = reproduction.write(str(agree), str(tmp_path / 'out' / 'agrees.md'))
  assert _verdicts(claims, 'Fig. 2', 'Chans')['paper_cifar10/fig6_modes'] == 'agrees'
  assert _verdicts(claims, 'Fig. 2', 'Space')['paper_cifar10/fig6_modes'] == 'agrees'
  assert _verdicts(claims, 'Fig. 2')['repro_cifar10/resnet_modes'] == 'not measured'
  families = _verdicts(claims, 'Fig. 3')
  assert families['paper_cifar10/fig6_modes, paper_cifar10/fig3_families'] == 'agrees'
  robust = _verdicts(claims, 'Fig. 6', 'Chans is more robust than Full')
  assert robust['paper_cifar10/fig6_modes'] == 'agrees'
  assert robust['repro_cifar10/robustness_long'] == 'not measured'
  # No strong-attack records and no paper-size ConvMixer grid here: those rows say so.
  assert _verdicts(claims, 'Fig. 6', 'Under attacks stronger')[
      'paper_cifar10/fig6_modes'] == 'not measured'
  assert _verdicts(claims, 'Fig. 5')['paper_cifar10/fig5_convmixer'] == 'not measured'
  fig7 = _verdicts(claims, 'Fig. 7')
  assert fig7['paper_cifar10/fig5_convmixer, paper_cifar10/fig7_smooth'] == 'not measured'
  assert _verdicts(claims, 'Fig. 6', 'Chans is more robust than Space')[
      'paper_cifar10/fig6_modes'] == 'agrees'
  assert _verdicts(claims, 'Fig. 6', 'After FGSM')['paper_cifar10/fig6_adversarial'] == 'agrees'
  measured = next(c['measured'] for c in claims if c['figure'] == 'Fig. 6'
                  and c['grids'] == 'paper_cifar10/fig6_modes')
  assert 'FGSM: Chans − Full: chans 0.4020 ± 0.0016, full 0.3020 ± 0.0016; Δ +10.0 pp' in measured
  assert ', n = 5 + 5 → agrees' in measured
  assert all(v == 'not measured' for v in _verdicts(claims, 'Fig. 4').values())
  # Each row says its test, its seeds and its budget.
  row = next(c for c in claims if c['figure'] == 'Fig. 2' and c['claim'].startswith('Chans'))
  assert row['test'].startswith('TOST at ±1.5 pp') and row['seeds'] == '5 per arm'
  assert row['budget'] == '4 epochs × 128'

  # Space level with Full, Chans 15 points below, Full more robust: the claims must now fail.
  contrary = _classification({'full': 0.70, 'chans': 0.55, 'space': 0.70},
                             {'full': 0.40, 'chans': 0.30, 'space': 0.20})
  _write_grid(tmp_path / 'contrary', repro_cifar10, 'convmixer_modes', contrary, seeds=5)
  _write_grid(tmp_path / 'contrary', paper_cifar10, 'fig6_modes', contrary, seeds=5)
  claims = reproduction.write(str(tmp_path / 'contrary'), str(tmp_path / 'out' / 'contrary.md'))
  assert _verdicts(claims, 'Fig. 2', 'Chans')['paper_cifar10/fig6_modes'] == 'disagrees'
  assert _verdicts(claims, 'Fig. 2', 'Space')['paper_cifar10/fig6_modes'] == 'disagrees'
  assert _verdicts(claims, 'Fig. 6', 'Chans is more robust than Full')[
      'paper_cifar10/fig6_modes'] == 'disagrees'
  markdown = (tmp_path / 'out' / 'contrary.md').read_text()
  assert '| repro_cifar10/convmixer_modes | 15/15 |' in markdown
  assert '--config=configs/sweeps/paper_cifar10.py:fig6_modes' in markdown
  assert '![fig6_fgsm](contrary/fig6_fgsm.png)' in markdown
  assert (tmp_path / 'out' / 'contrary' / 'fig6_fgsm.png').exists()


def test_architecture_is_tagged_per_grid_and_figure(tmp_path):
  metrics = _classification({'full': 0.70, 'chans': 0.69, 'space': 0.5},
                            {'full': 0.3, 'chans': 0.4, 'space': 0.2})
  _write_grid(tmp_path, repro_cifar10, 'convmixer_modes', metrics)
  _write_grid(tmp_path, paper_cifar10, 'fig6_modes', metrics)
  _write_grid(tmp_path, paper_cifar10, 'fig10_width',
              lambda o: ({'test_psnr': 15.0, 'scrambled_psnr': 5.0}, None))
  _write_grid(tmp_path, repro_cifar10, 'unshuffle',
              lambda o: ({'test_psnr': 15.0, 'scrambled_psnr': 11.0}, None))
  claims = reproduction.write(str(tmp_path), str(tmp_path / 'out.md'))
  tags = {(c['figure'], c['grids']): c['architecture'] for c in claims}
  # One grid, two figures: Fig. 5 is a ConvMixer figure (another size), Fig. 6 is not.
  fig5 = tags['Fig. 5', 'repro_cifar10/convmixer_modes']
  assert "not the paper's size** (128/4 k5 p2 vs 128/k8/p1)" in fig5
  assert "not this figure's architecture** (a separable ResNet)" in tags[
      'Fig. 6', 'repro_cifar10/convmixer_modes']
  assert "not" not in tags['Fig. 6', 'paper_cifar10/fig6_modes']
  assert 'digits stand-in for CIFAR-10' in tags['Fig. 10', 'paper_cifar10/fig10_width']
  assert "Fig. 10's dataset (CIFAR-10)" in tags['Fig. 10', 'repro_cifar10/unshuffle']
  assert not any(c['figure'] == 'Fig. B.2' for c in claims)  # B.2 is MNIST, not CIFAR-10
  markdown = (tmp_path / 'out.md').read_text()
  assert 'assumed: depth' in markdown  # the paper's presets say which depths are ours


def test_a_cell_whose_frozen_weights_changed_is_flagged_wherever_it_is_read(tmp_path):
  _write_grid(tmp_path, repro_cifar10, 'convmixer_modes', _classification(
      {'full': 0.70, 'chans': 0.69, 'space': 0.5}, {'full': 0.3, 'chans': 0.4, 'space': 0.2}))
  _write_grid(tmp_path, repro_cifar10, 'smooth', _classification(
      {'chans': 0.68}, {'chans': 0.45}), frozen_unchanged=False)
  claims = reproduction.write(str(tmp_path), str(tmp_path / 'out.md'))
  smooth = [c for c in claims if c['grids'] == 'repro_cifar10/convmixer_modes, '
            'repro_cifar10/smooth']
  assert len(smooth) == 2  # more robust, and without hurting clean accuracy
  for claim in smooth:
    assert len(claim['flagged']) == 4
    assert 'repro_cifar10/smooth/smooth_sigma-1.0.mode-chans.seed-0' in claim['flagged']
    assert 'frozen weights changed' in reproduction.claims_table.verdict_cell(claim)
  assert not any(c['flagged'] for c in claims if 'smooth' not in c['grids'])
  markdown = (tmp_path / 'out.md').read_text()
  assert '⚠ **4 cell(s) record `frozen_unchanged: false`**' in markdown
  assert '- `repro_cifar10/smooth/smooth_sigma-2.0.mode-chans.seed-1` (claim rows' in markdown


def test_cells_differing_only_in_width_multiplier_stay_apart(tmp_path):
  _write_grid(tmp_path, paper_cifar10, 'fig4_width',
              lambda o: ({'test_accuracy': 0.5 + 0.1 * o['model.width_multiplier']
                          + 0.001 * o['seed']}, None))
  rows = records.load_cells(str(tmp_path / 'paper_cifar10' / 'fig4_width'))
  assert records.varying(rows) == ['mode', 'model.width_multiplier']
  stats = records.group(rows, records.varying(rows), 'test_accuracy')
  assert len(stats) == 6 and all(n == 2 for _, _, n in stats.values())
  assert stats[('chans', 4)][0] == pytest.approx(0.9005)
  assert stats[('chans', 1)][0] == pytest.approx(0.6005)


def test_legend_names_the_training_not_the_adversarial_fields():
  fields = ['adversarial_training.enabled', 'adversarial_training.epsilon', 'mode']
  assert records.line_label(fields, (False, 0.0, 'chans')) == 'standard training, mode=chans'
  assert records.line_label(fields, (True, 1.0, 'full')) == 'FGSM-trained at 1/255, mode=full'
  assert records.line_label(['adversarial_training.epsilon'], (4.0,)) == 'FGSM-trained at 4/255'
  assert records.line_label(['model.width'], (64,)) == 'width=64'


def test_paper_pgd_with_two_steps_is_fgsm_applied_twice_with_projection():
  # A loss whose gradient sign flips where x crosses 0.5: the second step must start from the
  # first step's (projected) point, and the projection must clip to the ε-ball and to [0, 1].
  weights = jnp.array([1.0, -1.0, 2.0, -3.0])
  loss = lambda x: jnp.sum(weights * (x - 0.5) ** 2)
  x = jnp.array([0.5, 0.52, 0.99, 0.01])
  epsilon = 0.03

  def project(z):
    return jnp.clip(jnp.clip(z, x - epsilon, x + epsilon), 0.0, 1.0)

  twice = project(attacks.fgsm(loss, project(attacks.fgsm(loss, x, epsilon)), epsilon))
  config = type('EvalConfig', (), {'pgd_variant': 'paper', 'pgd_step_size': 0.0,
                                   'pgd_steps': 2})
  step = attacks.pgd_step_size(config, epsilon)
  assert step == epsilon  # the paper's eq. 4: steps of ε
  got = attacks.pgd(loss, x, epsilon, steps=2, step_size=step, key=None)
  np.testing.assert_allclose(got, twice, atol=1e-7)
  assert not np.allclose(got, attacks.fgsm(loss, x, epsilon))  # two steps, not one


def test_unshuffle_verdict_uses_the_share_of_full_psnr_gain(tmp_path):
  def psnr(chans):
    return lambda o: ({'test_psnr': {'full': 20.0, 'chans': chans}[o['mode']] + 0.1 * o['seed'],
                       'scrambled_psnr': 10.0}, None)
  # Full gains 10 dB over the scrambled input: 18.5 dB keeps 85 %, 17 dB 70 %, 18 dB 80 %.
  for chans, expected in ((18.5, 'agrees'), (17.0, 'disagrees'), (18.0, 'inconclusive')):
    workdir = tmp_path / str(chans)
    _write_grid(workdir, repro_cifar10, 'unshuffle_digits', psnr(chans), seeds=3)
    rows = reproduction.load(str(workdir))['repro_cifar10/unshuffle_digits']
    assert verdicts.unshuffle_share(rows)['verdict'] == expected


def test_without_the_modes_grid_the_error_names_the_command(tmp_path):
  with pytest.raises(ValueError, match='repro_cifar10.py:convmixer_modes'):
    reproduction.write(str(tmp_path), str(tmp_path / 'out.md'))


def test_committed_report_is_what_the_report_command_writes(tmp_path, monkeypatch):
  committed = REPO / 'docs' / 'reproduction.md'
  if not committed.exists():
    pytest.skip('docs/reproduction.md has not been generated yet')
  monkeypatch.chdir(REPO)
  output = tmp_path / 'reproduction.md'
  reproduction.write(COMMITTED, str(output))

  def body(text):  # the first paragraph names the output path
    return [line for line in text.splitlines() if not line.startswith('Generated by')]
  assert body(output.read_text()) == body(committed.read_text())
  for csv_file in sorted((REPO / 'docs' / 'reproduction').glob('*.csv')):
    assert (tmp_path / 'reproduction' / csv_file.name).read_text() == csv_file.read_text()
  assert len(os.listdir(tmp_path / 'reproduction')) == len(
      os.listdir(REPO / 'docs' / 'reproduction'))
  readme = (REPO / 'README.md').read_text()
  claims = reproduction.write(COMMITTED, str(tmp_path / 'again.md'))
  assert reproduction.with_readme_table(readme, claims) == readme


def test_readme_table_replaces_only_the_lines_between_its_markers():
  claims = [{'figure': 'Fig. 2', 'claim': 'c', 'architecture': 'a', 'budget': 'b',
             'test': 't', 'seeds': '5 per arm', 'measured': 'm |gap|', 'verdict': 'agrees',
             'flagged': ()}]
  readme = 'intro\n<!-- claims -->\nold row\n<!-- /claims -->\nafter'
  assert reproduction.with_readme_table(readme, claims).split('\n') == [
      'intro', '<!-- claims -->',
      '| figure | claim | architecture | budget | test | seeds | measured | verdict |',
      '|---|---|---|---|---|---|---|---|',
      '| Fig. 2 | c | a | b | t | 5 per arm | m \\|gap\\| | **agrees** |', '<!-- /claims -->',
      'after']
  with pytest.raises(ValueError, match='<!-- claims -->'):
    reproduction.with_readme_table('no markers here', claims)


def test_a_grid_with_some_cells_names_what_it_still_lacks():
  rows = [{'mode': 'full', 'seed': 0, 'test_accuracy': 0.6},
          {'mode': 'chans', 'seed': 0, 'test_accuracy': 0.59}]
  assert verdicts.space_lags([])['measured'] == 'grid not run'
  result = verdicts.space_lags(rows)
  assert result['verdict'] == 'not measured'
  assert 'grid incomplete: no finished mode=space cell yet' in result['measured']
  widths = [{'mode': m, 'seed': 0, 'model.width_multiplier': w, 'test_accuracy': 0.6}
            for w, m in ((1, 'full'), (1, 'chans'), (2, 'full'))]
  result = verdicts.width_narrows(widths)
  assert result['verdict'] == 'not measured'
  assert result['measured'].endswith(
      'grid incomplete: no finished width_multiplier=2, mode=chans cell yet')


def test_cells_attacked_differently_are_seeds_of_one_clean_experiment(tmp_path):
  for seed, attacks in ((0, 'fgsm,pgd'), (1, '')):
    celldir = tmp_path / f'seed-{seed}'
    celldir.mkdir()
    config = {'mode': 'chans', 'seed': seed,
              'eval': {'attacks': attacks, 'max_examples': 2000 if attacks else -1}}
    record = {'model_config': {}, 'mode': 'chans', 'dataset': 'cifar10',
              'task': 'classification', 'seed': seed, 'test_accuracy': 0.5 + seed / 10}
    (celldir / 'config.json').write_text(json.dumps(config))
    (celldir / 'results.json').write_text(json.dumps(record))
    if attacks:
      (celldir / 'eval.json').write_text(json.dumps({'robustness': {'fgsm': {'1': 0.3}}}))
  rows = records.load_cells(str(tmp_path))
  assert records.varying(verdicts.plain(rows)) == []  # clean: two seeds of one experiment
  attacked = [r for r in rows if 'attack' in r]
  assert attacked[0]['eval.max_examples'] == 2000  # how it was attacked stays on its rows
