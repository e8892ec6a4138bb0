"""Behaviour is kept bitwise: fixed small runs reproduce the metrics recorded in
tests/golden/results.json (re-record with `python -m tests.golden.runs` only for a change that
is meant to alter results, and say why in its commit)."""

import json

import pytest

from golden import runs

with open(runs.RECORD) as f:
  RECORDED = json.load(f)


@pytest.mark.parametrize('name', sorted(RECORDED['runs']))
def test_fixed_run_reproduces_its_recorded_metrics_bitwise(name, tmp_path):
  if runs.machine() != RECORDED['machine']:
    pytest.skip(f'recorded on {RECORDED["machine"]}, this is {runs.machine()}: floating-point '
                'results differ across vector instruction sets and XLA versions')
  assert runs.run(name, runs.configs()[name], str(tmp_path)) == RECORDED['runs'][name]
