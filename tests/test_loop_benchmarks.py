"""The whole-loop benchmarks run and summarise what they ran (nothing here is timed):
`benchmarks/loop.py` end to end on a tiny model over mock data, and the statistics and table
of `benchmarks/end_to_end.py` from recorded runs."""

import json
import os

import pytest

from benchmarks import end_to_end
from benchmarks import harness
from benchmarks import loop


def test_loop_smoke_run_on_a_tiny_model(tmp_path):
  # JAX only: in a process that has loaded TensorFlow first, this environment's torch can
  # crash importing triton (torch.optim imports it); the PyTorch side of a row is summarised
  # by the same code, tested below on recorded runs.
  model = next(iter(harness.SMOKE_MODELS))
  out = tmp_path / 'loop.json'
  loop.main(['--models', model, '--modes', 'full,chans', '--window', '1', '--steps', '2',
             '--reps', '2', '--eval_examples', '8', '--out', str(out), '--no-torch',
             # Every usable core: fewer would pin this whole test process.
             '--threads', str(len(os.sched_getaffinity(0)))])
  payload = json.loads(out.read_text())
  assert payload['meta']['data'] == 'TFDS mock CIFAR-10'
  assert payload['meta']['reps'] == 2
  runs, records = payload['runs'], payload['records']
  # Interleaved: every row once, then every row again.
  assert [(r['rep'], r['mode']) for r in runs] == [(0, 'full'), (0, 'chans'), (1, 'full'),
                                                   (1, 'chans')]
  assert [(r['model'], r['mode'], r['reps']) for r in records] == [(model, 'full', 2),
                                                                   (model, 'chans', 2)]
  for record in records:
    rates = sorted(r['jax_img_per_s'] for r in runs if r['mode'] == record['mode'])
    assert all(rate > 0 for rate in rates)
    assert (record['jax_min'], record['jax_max']) == (rates[0], rates[-1])
    assert record['jax_img_per_s'] == pytest.approx(sum(rates) / 2)  # median of two
    # The parts add up to the loop's time (each rounded to the millisecond in results.json,
    # which is a few per cent of a tiny model's second).
    assert record['input_pct'] + record['compute_pct'] + record['host_pct'] == pytest.approx(
        100, abs=5)
  full, chans = records
  assert full['jax_time_vs_full'] is None  # the reference row itself
  assert chans['jax_time_vs_full'] == pytest.approx(
      full['jax_img_per_s'] / chans['jax_img_per_s'])


def test_loop_rows_summarise_both_frameworks():
  def run(rep, mode, jax_rate, torch_rate):
    return {'rep': rep, 'model': 'm', 'mode': mode, 'jax_img_per_s': jax_rate,
            'torch_img_per_s': torch_rate, 'torchc_img_per_s': 2 * torch_rate, 'load_avg': 0.5,
            'jax': {'seconds': 2.0, 'input_seconds': 0.1, 'compute_seconds': 1.8,
                    'host_seconds': 0.1}}
  runs = [run(0, 'full', 100, 90), run(0, 'chans', 130, 150), run(1, 'full', 110, 80),
          run(1, 'chans', 120, 160), run(2, 'full', 90, 100), run(2, 'chans', 125, 140)]
  full = loop.summarise(runs, 'm', 'full', [])
  chans = loop.summarise(runs, 'm', 'chans', [full])
  assert (full['jax_img_per_s'], full['jax_min'], full['jax_max']) == (100, 90, 110)
  assert (full['torch_img_per_s'], full['torch_min'], full['torch_max']) == (90, 80, 100)
  assert chans['ratio_vs_torch'] == pytest.approx(125 / 150)
  assert chans['jax_time_vs_full'] == pytest.approx(100 / 125)
  assert chans['torch_time_vs_full'] == pytest.approx(90 / 150)
  # The compiled twin (here twice the eager one's rate) is summarised the same way.
  assert (full['torchc_img_per_s'], full['torchc_min'], full['torchc_max']) == (180, 160, 200)
  assert chans['ratio_vs_compiled'] == pytest.approx(125 / 300)
  assert chans['torchc_time_vs_full'] == pytest.approx(180 / 300)
  assert (chans['input_pct'], chans['compute_pct'], chans['host_pct']) == pytest.approx(
      (5, 90, 5))


def test_loop_rejects_bad_arguments_before_compute():
  with pytest.raises(SystemExit):
    loop.parse_args(['--out', 'x.json', '--reps', '0'])
  with pytest.raises(SystemExit):
    loop.parse_args(['--out', 'x.json', '--models', 'convmixer_9'])
  with pytest.raises(SystemExit):
    loop.parse_args(['--out', 'x.json', '--torch-compile', '--no-torch'])


def _run(rep, mode, who, rate):
  return dict(rep=rep, mode=mode, who=who, img_per_s=rate, load_before=0.1, load_after=0.2,
              wall_s=1.0)


def test_end_to_end_summary_and_table():
  rates = {('full', 'project'): (300, 320, 310), ('full', 'peer'): (250, 260, 270),
           ('full', 'peer_same_malloc'): (280, 290, 300),
           ('chans', 'project'): (400, 390, 420), ('chans', 'peer'): (380, 400, 390),
           ('chans', 'peer_same_malloc'): (500, 510, 490)}
  runs = [_run(rep, mode, who, values[rep]) for (mode, who), values in rates.items()
          for rep in range(3)]
  rows = end_to_end.summarise(runs, ['full', 'chans'])
  full, chans = rows
  assert full['project'] == {'min': 300, 'median': 310, 'max': 320, 'n': 3}
  assert chans['ratio'] == pytest.approx(400 / 390)
  assert chans['ratio_same_malloc'] == pytest.approx(400 / 500)
  assert chans['project_time_vs_full'] == pytest.approx(310 / 400)
  assert chans['peer_time_vs_full'] == pytest.approx(260 / 390)
  header = dict(cpu_model='a CPU', threads=2, reps=3, load_avg_start=(0.1, 0, 0),
                load_avg_end=(0.2, 0, 0), date='2026-12-06')
  table = end_to_end.markdown(rows, header)
  assert '| chans | 400 (390–420) | 390 (380–400) | 1.03 | 500 (490–510) | 0.80 | 0.78 | 0.67 |' \
      in table


def test_end_to_end_reads_both_programs_output():
  log = ('I1206 train.py:186] Step 20/80: 2.00 steps/s (256 img/s), ETA 0.5 min\n'
         'I1206 train.py:186] Step 80/80: 4.33 steps/s (555 img/s), ETA 0.0 min\n')
  assert end_to_end.last_progress_img_per_s(log) == pytest.approx(4.33 * 128)
  assert end_to_end.peer_img_per_s('epoch 0 loss 1.9\n{"mode": "chans", "img_per_s": 559.5}\n') \
      == 559.5
  with pytest.raises(RuntimeError, match='no progress line'):
    end_to_end.last_progress_img_per_s('Traceback ...')
