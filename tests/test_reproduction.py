"""The reproduction report: verdicts follow the numbers and their seed noise, missing grids say
so, cells that differ in any config field stay apart, the paper's PGD is what it says, and the
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


def _write_grid(workdir, module, variant, metrics):
  """Cells of the real grid config with made-up metrics: metrics(overrides) -> (results, eval)."""
  grid = module.get_config(variant)
  folder = workdir / module.__name__.split('.')[-1] / variant
  for name, config, overrides in sweep.cells(grid):
    celldir = folder / name
    celldir.mkdir(parents=True)
    results, evaluated = metrics(overrides)
    record = {'model_config': config.model.to_dict(), 'dataset': config.dataset,
              'task': config.task, 'model': config.model.name, 'mode': config.mode,
              'seed': config.seed, 'step': 300, 'wall_time_s': 60.0, **results}
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


def _verdicts(claims, figure):
  return {c['grids']: c['verdict'] for c in claims if c['figure'] == figure}


def test_verdicts_follow_the_numbers_and_missing_grids_are_not_measured(tmp_path):
  paper_like = _classification({'full': 0.70, 'chans': 0.68, 'space': 0.50},
                               {'full': 0.30, 'chans': 0.40, 'space': 0.20})
  _write_grid(tmp_path / 'agrees', repro_cifar10, 'convmixer_modes', paper_like)
  _write_grid(tmp_path / 'agrees', paper_cifar10, 'fig6_modes', paper_like)
  _write_grid(tmp_path / 'agrees', paper_cifar10, 'fig3_families', _classification(
      {'same': 0.55, 'box': 0.45, 'identity': 0.44}, {'same': 0, 'box': 0, 'identity': 0}))
  _write_grid(tmp_path / 'agrees', paper_cifar10, 'fig6_adversarial', _classification(
      {'full': 0.60, 'chans': 0.60, 'space': 0.5}, {'full': 0.37, 'chans': 0.39, 'space': 0.3}))
  claims = reproduction.write(str(tmp_path / 'agrees'), str(tmp_path / 'out' / 'agrees.md'))
  modes = _verdicts(claims, 'Fig. 2')
  assert modes['paper_cifar10/fig6_modes'] == 'agrees'
  assert modes['repro_cifar10/resnet_modes'] == 'not measured'
  families = _verdicts(claims, 'Fig. 3')
  assert families['paper_cifar10/fig6_modes, paper_cifar10/fig3_families'] == 'agrees'
  robust = _verdicts(claims, 'Fig. 6')
  assert robust['paper_cifar10/fig6_modes'] == 'agrees'
  assert robust['repro_cifar10/robustness_long'] == 'not measured'
  assert robust['paper_cifar10/fig6_modes, paper_cifar10/fig6_adversarial'] == 'agrees'
  measured = next(c['measured'] for c in claims if c['figure'] == 'Fig. 6'
                  and c['grids'] == 'paper_cifar10/fig6_modes')
  assert 'FGSM: full 0.3005 ± 0.0007 (2 seeds), chans 0.4005 ± 0.0007 (2 seeds)' in measured
  assert _verdicts(claims, 'Fig. 4')['paper_cifar10/fig4_width'] == 'not measured'
  # Rows on another architecture than the figure's say so; the paper's own do not.
  architecture = {c['grids']: c['architecture'] for c in claims if c['figure'] == 'Fig. 6'}
  assert "not the paper's architecture" in architecture['repro_cifar10/convmixer_modes']
  assert "not the paper's" not in architecture['paper_cifar10/fig6_modes']

  # Space closer to Full than Chans, Full more robust: the same claims must now fail.
  contrary = _classification({'full': 0.70, 'chans': 0.55, 'space': 0.65},
                             {'full': 0.40, 'chans': 0.30, 'space': 0.20})
  _write_grid(tmp_path / 'contrary', repro_cifar10, 'convmixer_modes', contrary)
  _write_grid(tmp_path / 'contrary', paper_cifar10, 'fig6_modes', contrary)
  claims = reproduction.write(str(tmp_path / 'contrary'), str(tmp_path / 'out' / 'contrary.md'))
  assert _verdicts(claims, 'Fig. 2')['paper_cifar10/fig6_modes'] == 'disagrees'
  assert _verdicts(claims, 'Fig. 6')['paper_cifar10/fig6_modes'] == 'disagrees'
  markdown = (tmp_path / 'out' / 'contrary.md').read_text()
  assert '| repro_cifar10/convmixer_modes | 6/6 |' in markdown
  assert '--config=configs/sweeps/paper_cifar10.py:fig6_modes' in markdown
  assert '![fig6_fgsm](contrary/fig6_fgsm.png)' in markdown
  assert (tmp_path / 'out' / 'contrary' / 'fig6_fgsm.png').exists()


def test_a_verdict_with_overlapping_seeds_reads_inconclusive():
  assert verdicts.decide([0.70, 0.72], [0.69, 0.73])[2] == 'inconclusive'  # Δ 0 pp, s 2.9 pp
  assert verdicts.decide([0.70, 0.74], [0.69, 0.71])[2] == 'inconclusive'  # Δ 2 pp, s 2.2 pp
  assert verdicts.decide([0.80, 0.81], [0.70, 0.71])[2] == 'agrees'  # Δ 10 pp, s 0.7 pp
  assert verdicts.decide([0.70, 0.71], [0.80, 0.81])[2] == 'disagrees'
  delta, spread, verdict = verdicts.decide([0.9], [0.1])  # one seed: no spread to judge by
  assert (round(delta, 6), spread, verdict) == (0.8, None, 'inconclusive')
  assert verdicts.combine(['agrees', 'inconclusive']) == 'inconclusive'
  assert verdicts.combine(['agrees', 'disagrees']) == 'disagrees'
  assert verdicts.combine(['agrees', 'agrees']) == 'agrees'


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
  for chans, expected in ((18.5, 'agrees'), (17.0, 'disagrees'), (18.0, 'inconclusive')):
    workdir = tmp_path / str(chans)
    _write_grid(workdir, repro_cifar10, 'unshuffle_digits', psnr(chans))
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
  claims = [{'figure': 'Fig. 2', 'claim': 'c', 'architecture': 'a', 'measured': 'm',
             'verdict': 'agrees'}]
  readme = 'intro\n<!-- claims -->\nold row\n<!-- /claims -->\nafter'
  assert reproduction.with_readme_table(readme, claims).split('\n') == [
      'intro', '<!-- claims -->', '| figure | claim | architecture | measured | verdict |',
      '|---|---|---|---|---|', '| Fig. 2 | c | a | m | **agrees** |', '<!-- /claims -->', 'after']
  with pytest.raises(ValueError, match='<!-- claims -->'):
    reproduction.with_readme_table('no markers here', claims)


def test_a_grid_with_some_cells_names_what_it_still_lacks():
  rows = [{'mode': 'full', 'seed': 0, 'test_accuracy': 0.6},
          {'mode': 'chans', 'seed': 0, 'test_accuracy': 0.59}]
  assert verdicts.modes([])['measured'] == 'grid not run'
  result = verdicts.modes(rows)
  assert result['verdict'] == 'not measured'
  assert result['measured'] == 'grid incomplete: no finished space cell yet'
  widths = [{'mode': m, 'seed': 0, 'model.width_multiplier': w, 'test_accuracy': 0.6}
            for w, m in ((1, 'full'), (1, 'chans'), (2, 'full'))]
  result = verdicts.width(widths)
  assert result['verdict'] == 'not measured'
  assert result['measured'] == 'grid incomplete: no finished chans ×2 cell yet'


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
