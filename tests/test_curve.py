"""Evaluations along training (budget curves): one point per evaluation in curve.json,
attacked when asked, equal to a separate evaluation of the same step, and resumed bitwise."""

import json

import pytest

from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.jobs import curve
from spatialmix_jax.jobs import evaluation
from spatialmix_jax.jobs import train

import resume_check


def _curve_config(config):
  config.num_train_steps = 6
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 5
  config.eval.attacks = 'fgsm'
  config.eval.epsilons = '0,2'
  config.eval.max_examples = 64
  config.eval.attacks_along_training = True
  return config


def test_every_evaluation_along_training_is_a_point_equal_to_evaluating_that_step(
    tiny_config, tmp_path):
  config = _curve_config(tiny_config)
  results = train.train_and_evaluate(config, str(tmp_path))
  recorded = curve.read(str(tmp_path))
  assert [p['step'] for p in recorded['points']] == [2, 4, 6]
  assert recorded['num_attacked_examples'] == 64
  assert 'not models trained to each budget' in recorded['about']
  final = recorded['points'][-1]
  assert final['test_accuracy'] == results['test_accuracy']
  for point in recorded['points']:
    assert set(point['robustness']['fgsm']) == {'0', '2'}
    assert point['robustness']['fgsm']['2'] <= point['robustness']['fgsm']['0']
  # The step-4 point is what --job=eval of the step-4 checkpoint reports: attacked on the
  # same 64 images, clean on the whole test split.
  config.eval_step = 4
  middle = recorded['points'][1]
  assert middle['robustness'] == evaluation.evaluate(config, str(tmp_path))['robustness']
  config.eval.max_examples, config.eval.attacks = -1, ''
  assert middle['test_accuracy'] == evaluation.evaluate(config, str(tmp_path))['test_accuracy']


def test_a_run_without_periodic_evaluation_writes_no_curve(tiny_config, tmp_path):
  train.train_and_evaluate(tiny_config, str(tmp_path))
  assert curve.read(str(tmp_path)) is None


def test_an_interrupted_run_ends_with_the_same_curve(tiny_config, tmp_path, monkeypatch):
  config = _curve_config(tiny_config)
  config.eval.attacks_along_training = False  # the clean points suffice here
  resume_check.assert_sigterm_resume_is_bitwise(config, tmp_path, monkeypatch, 3)
  straight = curve.read(str(tmp_path / 'uninterrupted'))['points']
  resumed = curve.read(str(tmp_path / 'interrupted'))['points']
  assert json.dumps(straight) == json.dumps(resumed)
  assert [p['step'] for p in resumed] == [2, 4, 6]
  assert all('robustness' not in p for p in resumed)
  steps_per_epoch = input_pipeline.create_train_data(
      experiment_lib.create_experiment(config)).steps_per_epoch
  assert resumed[0]['epoch'] == pytest.approx(2 / steps_per_epoch)
