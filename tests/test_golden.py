"""Behaviour is kept: fixed small runs reproduce the metrics recorded in tests/golden/results.json
(re-record with `python -m tests.golden.runs` only for a change that is meant to alter results,
and say why in its commit).

Two checks of the same runs (each trained once per module):
* within a tolerance, on every machine, so that numeric drift is caught wherever the suite
  runs. The tolerances are some 70x (loss) and 300x (PSNR) what other instruction sets made of
  these runs: against the record (an AMX/AVX-512 Intel CPU), an AVX-512 AMD CPU without AMX
  reproduced every metric exactly, and the same CPU under `XLA_FLAGS=--xla_cpu_max_isa=AVX2`
  or `SSE4_2` with the native kernels off (SPATIALMIX_NO_NATIVE=1) moved no accuracy and no
  step count, a loss by at most 1.5e-6 relative and a PSNR by at most 3e-6 dB;
* bitwise, where the CPU's vector instructions and the JAX version are the recording
  machine's (floating-point results differ across those).
"""

import json
import math

import pytest

from golden import runs

with open(runs.RECORD) as f:
  RECORDED = json.load(f)

NAMES = sorted(RECORDED['runs'])
LOSS_RTOL = 1e-4  # test_loss, relative
PSNR_ATOL = 1e-3  # test_psnr and scrambled_psnr, dB
ACCURACY_EXAMPLES = 1  # accuracies (clean and under attack): one flipped near-tie at most


@pytest.fixture(scope='module')
def measured(tmp_path_factory):
  """name -> the metrics of that golden run, trained on first use, once per module."""
  cache = {}

  def measure(name):
    if name not in cache:
      cache[name] = runs.run(name, runs.configs()[name], str(tmp_path_factory.mktemp(name)))
    return cache[name]

  return measure


def _differences(got, recorded, examples, path=''):
  """(path, got, recorded) of every metric outside its tolerance."""
  if isinstance(recorded, dict):
    if set(got) != set(recorded):
      return [(path or '/', sorted(got), sorted(recorded))]
    return [d for key in recorded
            for d in _differences(got[key], recorded[key], examples, f'{path}/{key}')]
  name = path.split('/')[1]
  if name == 'test_loss':
    close = math.isclose(got, recorded, rel_tol=LOSS_RTOL)
  elif name.endswith('_psnr'):
    close = abs(got - recorded) <= PSNR_ATOL
  elif name in ('test_accuracy', 'robustness'):
    close = abs(got - recorded) * examples <= ACCURACY_EXAMPLES + 1e-9
  else:  # step, num_test_examples, frozen_unchanged: the same on every machine
    close = got == recorded
  return [] if close else [(path, got, recorded)]


@pytest.mark.parametrize('name', NAMES)
def test_fixed_run_reproduces_its_recorded_metrics_within_tolerance(name, measured):
  recorded = RECORDED['runs'][name]
  assert _differences(measured(name), recorded, recorded['num_test_examples']) == []


@pytest.mark.parametrize('name', NAMES)
def test_fixed_run_reproduces_its_recorded_metrics_bitwise(name, measured):
  if runs.machine() != RECORDED['machine']:
    pytest.skip(f'recorded on {RECORDED["machine"]}, this is {runs.machine()}: floating-point '
                'results differ across vector instruction sets and XLA versions (the '
                'tolerance check above ran)')
  assert measured(name) == RECORDED['runs'][name]


def test_the_tolerance_check_catches_drift():
  recorded = RECORDED['runs']['convmixer_adversarial_attacked']
  examples = recorded['num_test_examples']
  assert _differences(recorded, recorded, examples) == []
  drifted = json.loads(json.dumps(recorded))
  drifted['test_loss'] *= 1 + 3 * LOSS_RTOL
  drifted['robustness']['pgd']['4'] += 2 / examples
  assert [path for path, _, _ in _differences(drifted, recorded, examples)] == [
      '/robustness/pgd/4', '/test_loss']
  unshuffled = RECORDED['runs']['unshuffle_chans']
  drifted = dict(unshuffled, test_psnr=unshuffled['test_psnr'] + 2 * PSNR_ATOL, step=5)
  assert [path for path, _, _ in _differences(drifted, unshuffled, examples)] == [
      '/step', '/test_psnr']
