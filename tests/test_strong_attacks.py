"""The strong-attack command (study/strong_attacks.py) on kept checkpoints, and its report."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from spatialmix_jax.jobs import train
from spatialmix_jax.study import strong_attack_report
from spatialmix_jax.study import strong_attacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def grid(tmp_path_factory):
  """A grid folder with a Full and a Chans cell of seed 0, each with its checkpoint."""
  from configs import default  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('grid')
  for mode in ('full', 'chans'):
    config = default.get_config()
    config.mode = mode
    config.model.width = 16
    config.model.depth = 2
    config.batch_size = 64
    config.eval_batch_size = 40
    config.num_train_steps = 100
    config.checkpoint_every_steps = 100
    train.train_and_evaluate(config, str(workdir / f'mode-{mode}.seed-0'))
  return workdir


def _request(**changes):
  fields = dict(attacks='fgsm,apgd', transfer='fgsm', epsilons='0,1,16', max_examples=60,
                apgd_steps=5)
  fields.update(changes)
  return strong_attacks.parse_request(**fields)


def test_transfer_sources_pair_cells_seed_by_seed():
  # Several seeds of Full and Chans in one grid: each Chans cell is attacked with images
  # crafted on the Full model of its own seed (with all seeds in one group there would be
  # several Full cells and none would be the source).
  cells = {f'mode-{mode}.seed-{seed}': {'mode': mode, 'seed': seed, 'model': {'width': 16}}
           for mode in ('full', 'chans') for seed in (0, 1, 2)}
  planned = sorted((source, sorted(selected))
                   for source, selected in strong_attacks.plan(cells, _request()))
  assert planned == [(f'mode-full.seed-{s}', [f'mode-chans.seed-{s}', f'mode-full.seed-{s}'])
                     for s in (0, 1, 2)]
  only = strong_attacks.plan(cells, _request(), only=['mode-chans.seed-1'])
  assert only == [('mode-full.seed-1', ['mode-chans.seed-1'])]


def _read(grid, cell):
  with open(grid / cell / strong_attacks.OUTPUT) as f:
    return json.load(f)


def test_cells_get_white_box_and_transfer_results_next_to_their_records(grid):
  status = strong_attacks.run(str(grid), _request())
  assert status == {'mode-chans.seed-0': 'ran', 'mode-full.seed-0': 'ran'}
  full, chans = _read(grid, 'mode-full.seed-0'), _read(grid, 'mode-chans.seed-0')
  assert set(full['attacks']) == {'fgsm', 'apgd'}
  assert set(chans['attacks']) == {'fgsm', 'apgd', 'transfer_fgsm'}
  assert chans['attacks']['transfer_fgsm']['settings']['source'] == 'mode-full.seed-0'
  assert chans['attacks']['apgd']['settings']['steps'] == 5
  for record in (full, chans):
    assert record['num_examples'] == 60
    for entry in record['attacks'].values():
      assert set(entry['accuracy']) == {'0', '1', '16'}
      assert entry['accuracy']['0'] == record['clean_accuracy']
      assert entry['accuracy']['16'] < record['clean_accuracy']
  assert not os.path.exists(grid / 'mode-full.seed-0' / 'eval.json')  # never written
  report = strong_attack_report.write(str(grid))
  with open(report) as f:
    text = f.read()
  assert '| FGSM, white-box or crafted on Full (the lower) | full 0.' in text
  assert 'inconclusive' in text  # one seed: no spread to read a difference against
  assert '## Gradient masking' in text


def test_a_rerun_skips_and_a_new_request_is_merged(grid):
  if not os.path.exists(grid / 'mode-full.seed-0' / strong_attacks.OUTPUT):
    strong_attacks.run(str(grid), _request())
  assert set(strong_attacks.run(str(grid), _request()).values()) == {'skipped'}
  before = _read(grid, 'mode-chans.seed-0')
  status = strong_attacks.run(str(grid), _request(attacks='fgsm', transfer='',
                                                  epsilons='32'))
  assert set(status.values()) == {'ran'}
  after = _read(grid, 'mode-chans.seed-0')
  assert set(after['attacks']['fgsm']['accuracy']) == {'0', '1', '16', '32'}
  assert after['attacks']['apgd'] == before['attacks']['apgd']
  assert after['attacks']['fgsm']['accuracy']['1'] == before['attacks']['fgsm']['accuracy']['1']


@pytest.mark.parametrize('changes,match', [
    ({'attacks': 'fgsm,cw'}, 'Unknown attack'),
    ({'attacks': '', 'transfer': ''}, 'both empty'),
    ({'epsilons': '1,x'}, 'comma-separated numbers'),
    ({'max_examples': 0}, '--max_examples must be >= 1'),
    ({'apgd_steps': 0}, '--apgd_steps must be >= 1'),
    ({'data_dir': '/no/such/folder'}, 'is not a folder'),
])
def test_bad_requests_are_one_line_errors(changes, match):
  with pytest.raises(ValueError, match=match) as error:
    _request(**changes)
  assert '\n' not in str(error.value)


def test_cells_that_cannot_be_attacked_are_one_line_errors(grid, tmp_path):
  with pytest.raises(ValueError, match='have no config.json and checkpoints'):
    strong_attacks.run(str(grid), _request(), only=['mode-space.seed-0'])
  with pytest.raises(ValueError, match='No cell under'):
    strong_attacks.find_cells(str(tmp_path))
  shutil.copytree(grid / 'mode-chans.seed-0', tmp_path / 'mode-chans.seed-0')
  with pytest.raises(ValueError, match='no Full cell with a checkpoint'):
    strong_attacks.run(str(tmp_path), _request())


def test_the_command_says_what_is_wrong_in_one_line_before_any_compute(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'spatialmix_jax.study.strong_attacks',
       f'--workdir={tmp_path / "absent"}', '--max_examples=0'],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'error: --max_examples must be >= 1, or -1 for the whole test split, got 0.']


def _record(mode, seed, clean, curves):
  return {'mode': mode, 'seed': seed, 'num_examples': 100, 'clean_accuracy': clean, 'step': 1,
          'attacks': {a: {'settings': {}, 'accuracy': c} for a, c in curves.items()}}


def test_the_claim_and_the_masking_reading_follow_the_numbers():
  found = {}
  for seed in range(5):  # Fig. 6's headline claim asks for 5 seeds an arm
    found[f'full.{seed}'] = _record('full', seed, 0.7, {'apgd': {'1': 0.30 + 0.01 * seed}})
    found[f'chans.{seed}'] = _record('chans', seed, 0.7, {
        'apgd': {'1': 0.40 + 0.01 * seed}, 'transfer_apgd': {'1': 0.20 + 0.01 * seed}})
  assert strong_attack_report.claim(found, ['apgd'])['verdict'] == 'agrees'
  # On images crafted on Full, Chans falls below Full's white-box accuracy: the claim fails
  # once they count, and the transfer attack beating the white-box one reads as masking.
  both = strong_attack_report.claim(found, ['apgd', 'transfer_apgd'])
  assert both['verdict'] == 'disagrees'
  assert 'full 0.3200 ± 0.0158, chans 0.2200 ± 0.0158' in both['measured']
  assert 'transfer stronger' in strong_attack_report.masking(found, 'chans', 'apgd')['verdict']
  assert strong_attack_report.claim(found, ['apgd'], '2')['verdict'] == 'not measured'
  del found['full.4'], found['chans.4']
  assert strong_attack_report.claim(found, ['apgd'])['verdict'] == 'inconclusive'
  assert 'n < 5' in strong_attack_report.claim(found, ['apgd'])['measured']
  rows = dict(strong_attack_report.claims(['apgd', 'transfer_apgd']))
  assert rows['every attack above (the lowest)'] == ['apgd', 'transfer_apgd']


def test_white_box_stronger_than_transfer_reads_as_no_sign_of_masking():
  found = {f'chans.{seed}': _record('chans', seed, 0.7, {
      'apgd': {'1': 0.30 + 0.01 * seed}, 'transfer_apgd': {'1': 0.50 + 0.01 * seed}})
           for seed in (0, 1)}
  assert strong_attack_report.masking(found, 'chans', 'apgd')['verdict'] == (
      'white-box stronger: no sign of masking')


def test_sanity_checks_flag_a_rise_with_eps_and_an_attack_weaker_than_fgsm():
  record = _record('full', 0, 0.8, {'fgsm': {'0': 0.8, '4': 0.5, '8': 0.3},
                                    'apgd': {'0': 0.79, '4': 0.52, '8': 0.4}})
  checks = strong_attack_report.sanity(record, 'apgd')
  assert checks['ε = 0 equals clean'][0] is False
  assert checks['≤ FGSM'][0] is False
  assert checks['non-increasing in ε'][0] is True
  checks = strong_attack_report.sanity(record, 'fgsm')
  assert checks['ε = 0 equals clean'][0] is True
  record['attacks']['fgsm']['accuracy']['16'] = 0.35
  assert strong_attack_report.sanity(record, 'fgsm')['non-increasing in ε'][0] is False


def test_the_claims_table_reads_every_stronger_attack_and_holds_only_under_all():
  found = {}
  for seed in range(5):
    found[f'mode-full.seed-{seed}'] = _record('full', seed, 0.7, {
        'fgsm': {'1': 0.5}, 'apgd': {'1': 0.30 + 0.01 * seed}})
    found[f'mode-chans.seed-{seed}'] = _record('chans', seed, 0.7, {
        'fgsm': {'1': 0.5}, 'apgd': {'1': 0.40 + 0.01 * seed},
        'transfer_apgd': {'1': 0.45 + 0.01 * seed}})
  entry = strong_attack_report.table_entry(found, 'g')
  assert entry['verdict'] == 'agrees'
  assert entry['seeds'] == '5 per arm'
  assert 'FGSM, white-box:' not in entry['measured']  # the paper's attack has its own row
  assert 'APGD-CE, white-box: full 0.3200 ± 0.0158, chans 0.4200 ± 0.0158' in entry['measured']
  assert set(entry['cells']) == {f'g/{cell}' for cell in found}
  # Images crafted on Full that bring Chans below Full: the claim fails under them, and so
  # overall.
  for seed in range(5):
    found[f'mode-chans.seed-{seed}']['attacks']['transfer_apgd']['accuracy']['1'] = 0.2 + 0.01 * seed
  entry = strong_attack_report.table_entry(found, 'g')
  assert entry['verdict'] == 'disagrees'
  assert 'APGD-CE, white-box: ' in entry['measured'] and '→ agrees' in entry['measured']
  assert strong_attack_report.table_entry({}, 'g')['verdict'] == 'not measured'
