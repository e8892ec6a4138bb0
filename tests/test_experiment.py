"""The Experiment a config becomes: checked in one pass, read-only all the way down."""

import pytest

from configs import default
from spatialmix_jax.config import experiment as experiment_lib


def _digits():
  config = default.get_config()
  config.model.width, config.model.depth = 8, 1
  return config


def test_the_experiment_config_is_a_frozen_copy():
  config = _digits()
  experiment = experiment_lib.create_experiment(config)
  with pytest.raises(AttributeError, match='immutable'):
    experiment.config.seed = 1
  with pytest.raises(AttributeError, match='immutable'):
    experiment.config.model.width = 16
  config.model.width = 32  # the caller's ConfigDict stays its own
  assert experiment.config.model.width == 8
  with pytest.raises(Exception):  # a frozen dataclass: no field can be swapped either
    experiment.mesh = None


def test_validation_is_one_pass_over_the_registry_in_folder_order(monkeypatch):
  calls = []
  for index, (name, check) in enumerate(experiment_lib.CHECKS):

    def recording(config, resolved, name=name, check=check):
      calls.append(name)
      check(config, resolved)

    monkeypatch.setattr(experiment_lib, 'CHECKS', experiment_lib.CHECKS[:index] + (
        (name, recording),) + experiment_lib.CHECKS[index + 1:])
  resolved = experiment_lib.validate_config(_digits())
  assert calls == [name for name, _ in experiment_lib.CHECKS]
  assert len(calls) == len(set(calls))  # each check once
  assert resolved.spec.num_classes == 10 and resolved.image_shape == (8, 8, 1)
  assert resolved.entry.output == resolved.task_class.model_output


def test_create_experiment_builds_from_what_validation_resolved(monkeypatch):
  calls = []
  original = experiment_lib.validate_config
  monkeypatch.setattr(experiment_lib, 'validate_config',
                      lambda config: calls.append(1) or original(config))
  experiment = experiment_lib.create_experiment(_digits())
  assert calls == [1]
  assert experiment.image_shape == (8, 8, 1)


def test_the_first_bad_part_is_reported():
  config = _digits()
  config.optimizer.name = 'lamb'
  config.augment.randaugment_policy = 'nope'
  with pytest.raises(ValueError, match='optimizer'):
    experiment_lib.validate_config(config)
