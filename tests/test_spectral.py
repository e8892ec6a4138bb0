"""Spectral envelopes and coverage of depthwise filter banks (paper §3.1)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spatialmix_jax.study import spectral


def test_envelope_of_a_delta_is_flat():
  delta = np.zeros((5, 5))
  delta[2, 2] = 1.0
  env = spectral.envelope(delta, size=64)
  assert env.shape == (64, 64)
  np.testing.assert_allclose(env, 1.0, atol=1e-12)
  assert spectral.coverage(env) == 1.0


def test_envelope_of_a_box_is_a_sinc_low_pass():
  k, size = 4, 64
  env = spectral.envelope(np.ones((k, k)) / k ** 2, size=size)
  centre = size // 2
  assert env[centre, centre] == pytest.approx(1.0)  # DC gain of an average
  assert env.max() == pytest.approx(1.0)
  profile = env[centre, centre:]
  first_null = size // k  # |sin(pi k f) / (k sin(pi f))| = 0 at f = 1/k
  assert profile[first_null] == pytest.approx(0.0, abs=1e-12)
  assert np.all(np.diff(profile[:first_null + 1]) < 0)  # main lobe falls monotonically
  assert profile[first_null + first_null // 2] < 0.3  # side lobes stay far below DC
  assert spectral.coverage(env) < 0.15


def test_coverage_grows_with_the_number_of_random_filters():
  def mean_coverage(n):
    return np.mean([spectral.coverage(spectral.envelope(spectral.random_bank(n, 8, seed=s), 64))
                    for s in range(6)])
  one, eight, many = mean_coverage(1), mean_coverage(8), mean_coverage(128)
  assert one < eight < many
  assert many > 0.95


def test_smoothing_shrinks_coverage():
  random = spectral.coverage(spectral.envelope(spectral.random_bank(64, 8), 64))
  smooth = spectral.coverage(spectral.envelope(
      spectral.random_bank(64, 8, spatial_init='smooth', smooth_sigma=2.0), 64))
  assert smooth < 0.5 * random


def test_depthwise_kernels_in_depth_order():
  weights = {'spatial': {f'DepthwiseConv_{i}': {'kernel': np.full((3, 3, 1, 2), i),
                                                'bias': np.zeros(2)} for i in (0, 2, 10)},
             'channel': {'PointwiseConv_0': {'kernel': np.zeros((1, 1, 2, 2))}}}
  banks = spectral.depthwise_kernels(weights)
  assert list(banks) == ['DepthwiseConv_0', 'DepthwiseConv_2', 'DepthwiseConv_10']
  assert banks['DepthwiseConv_10'].shape == (3, 3, 2)


def test_cli_writes_figures_and_coverage_of_a_trained_run(tiny_config, trained_digits):
  workdir, _ = trained_digits  # tiny_config, trained
  record = spectral.run(str(workdir), size=64, max_random_filters=8)
  out = workdir / 'spectral'
  for name in ('random_banks.png', 'trained_layers.png', 'random_vs_smooth.png'):
    assert (out / name).stat().st_size > 1000
  saved = json.loads((out / 'coverage.json').read_text())
  assert saved['threshold'] == 0.5 and saved['size'] == 64
  assert list(saved['random_banks']) == ['1 random', '2 random', '4 random', '8 random']
  assert len(saved['trained_layers']) == tiny_config.model.depth
  assert saved['trained_layers'] == record['trained_layers']


def test_model_without_depthwise_filters_is_a_one_line_error(tiny_config, tmp_path):
  tiny_config.model.name = 'resnet_cifar'
  tiny_config.model.depth = 8
  (tmp_path / 'config.json').write_text(tiny_config.to_json_best_effort())
  with pytest.raises(ValueError, match='no depthwise') as error:
    spectral.run(str(tmp_path), size=32)
  assert '\n' not in str(error.value)
  assert not (tmp_path / 'spectral').exists()
  completed = subprocess.run(
      [sys.executable, '-m', 'spatialmix_jax.study.spectral', f'--workdir={tmp_path}'],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, timeout=120, check=False)
  assert completed.returncode == 2
  assert completed.stderr.strip().splitlines()[-1].startswith('error: ')
  assert 'no depthwise' in completed.stderr
