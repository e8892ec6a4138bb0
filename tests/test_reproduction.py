"""The reproduction report: verdicts follow the numbers, missing grids say so, the committed
docs/reproduction.md is what the report command writes from the committed records."""

import json
import os
import pathlib

import pytest

from configs.sweeps import repro_cifar10
from spatialmix_jax import reproduction
from spatialmix_jax import sweep

REPO = pathlib.Path(__file__).resolve().parent.parent
COMMITTED = 'docs/results/repro_cifar10'


def _write_grid(workdir, variant, metrics):
  """Cells of the real grid config with made-up metrics: metrics(overrides) -> (results, eval)."""
  grid = repro_cifar10.get_config(variant)
  for name, config, overrides in sweep.cells(grid):
    celldir = workdir / variant / name
    celldir.mkdir(parents=True)
    results, evaluated = metrics(overrides)
    model = {k: config.model[k] for k in ('depth', 'width', 'kernel_size', 'spatial_init',
                                           'smooth_sigma')}
    record = {'model_config': model, 'dataset': config.dataset, 'task': config.task,
              'model': config.model.name, 'mode': config.mode, 'seed': config.seed,
              'step': config.num_train_steps, 'wall_time_s': 60.0, **results}
    (celldir / 'results.json').write_text(json.dumps(record))
    (celldir / 'config.json').write_text(json.dumps(config.to_dict()))
    if evaluated is not None:
      (celldir / 'eval.json').write_text(json.dumps({**record, **evaluated}))


def _classification(accuracy, attacked):
  def metrics(overrides):
    key = overrides.get('model.spatial_init', overrides['mode'])
    clean = accuracy[key] + 0.001 * overrides['seed']
    robustness = {a: {'0': clean, '1': attacked[key] + 0.001 * overrides['seed']}
                  for a in ('fgsm', 'pgd')}
    return {'test_accuracy': clean}, {'robustness': robustness, 'wall_time_s': 30.0}
  return metrics


def _verdicts(claims):
  return [(c['grids'], c['verdict']) for c in claims]


def test_verdicts_follow_the_numbers_and_missing_grids_are_not_measured(tmp_path):
  paper_like = _classification({'full': 0.70, 'chans': 0.68, 'space': 0.50},
                               {'full': 0.30, 'chans': 0.40, 'space': 0.20})
  _write_grid(tmp_path / 'agrees', 'convmixer_modes', paper_like)
  _write_grid(tmp_path / 'agrees', 'families', _classification(
      {'same': 0.55, 'box': 0.45, 'identity': 0.44}, {'same': 0, 'box': 0, 'identity': 0}))
  _write_grid(tmp_path / 'agrees', 'adversarial', _classification(
      {'full': 0.60, 'chans': 0.60}, {'full': 0.37, 'chans': 0.39}))
  claims = reproduction.write(str(tmp_path / 'agrees'), str(tmp_path / 'out' / 'agrees.md'))
  verdicts = dict(_verdicts(claims)[:3])
  assert verdicts['convmixer_modes'] == 'agrees'
  assert verdicts['resnet_modes'] == 'not measured'
  assert verdicts['families + chans of convmixer_modes'] == 'agrees'
  robust = [c for c in claims if c['claim'].startswith('Chans models are more robust')]
  assert [c['verdict'] for c in robust] == ['agrees', 'not measured']
  assert 'FGSM: full 0.3005 ± 0.0007, chans 0.4005 ± 0.0007' in robust[0]['measured']
  adversarial = [c for c in claims if 'adversarial training' in c['claim']]
  assert [c['verdict'] for c in adversarial] == ['agrees']
  assert 'Chans − Full +10.0 pp without, +2.0 pp with' in adversarial[0]['measured']

  # Space closer to Full than Chans, Full more robust: the same claims must now fail.
  contrary = _classification({'full': 0.70, 'chans': 0.55, 'space': 0.65},
                             {'full': 0.40, 'chans': 0.30, 'space': 0.20})
  _write_grid(tmp_path / 'contrary', 'convmixer_modes', contrary)
  claims = reproduction.write(str(tmp_path / 'contrary'), str(tmp_path / 'out' / 'contrary.md'))
  assert _verdicts(claims)[0] == ('convmixer_modes', 'disagrees')
  robust = [c for c in claims if c['claim'].startswith('Chans models are more robust')]
  assert robust[0]['verdict'] == 'disagrees'
  assert [c['verdict'] for c in claims if 'decorrelated' in c['claim']] == ['not measured']

  markdown = (tmp_path / 'out' / 'contrary.md').read_text()
  assert '| convmixer_modes | 6/6 |' in markdown
  assert '--config=configs/sweeps/repro_cifar10.py:convmixer_modes' in markdown
  assert '![robustness_fgsm](contrary/robustness_fgsm.png)' in markdown
  assert (tmp_path / 'out' / 'contrary' / 'robustness_fgsm.png').exists()


def test_unshuffle_verdict_uses_the_share_of_full_psnr_gain(tmp_path):
  def psnr(chans):
    return lambda o: ({'test_psnr': {'full': 20.0, 'chans': chans}[o['mode']],
                       'scrambled_psnr': 10.0}, None)
  for chans, expected in ((18.5, 'agrees'), (17.0, 'disagrees')):
    workdir = tmp_path / str(chans)
    _write_grid(workdir, 'unshuffle_digits', psnr(chans))
    rows = reproduction.load(str(workdir))['unshuffle_digits']
    assert reproduction.unshuffle_claim(rows, 'digits')['verdict'] == expected


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
