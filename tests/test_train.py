"""The training system end to end: train, save, resume, evaluate, on real and mock data."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from spatialmix_jax.training import checkpointing
from spatialmix_jax.jobs import evaluation
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.study import sweep
from spatialmix_jax.data import tfds_builders
from spatialmix_jax.jobs import train
from spatialmix_jax.training import train_state

import resume_check


def test_default_job_trains_and_eval_reproduces(tiny_config, trained_digits):
  workdir, results = trained_digits  # tiny_config, trained
  assert results['num_test_examples'] == 360  # every digits test example, once
  assert results['frozen_unchanged'] is True
  assert results['params']['frozen'] > 0
  with open(workdir / 'results.json') as f:
    assert json.load(f)['test_accuracy'] == results['test_accuracy']
  evaluated = evaluation.evaluate(tiny_config, str(workdir))
  assert evaluated['step'] == 6
  assert evaluated['test_accuracy'] == results['test_accuracy']
  assert evaluated['test_loss'] == pytest.approx(results['test_loss'], rel=1e-6)
  assert (workdir / 'eval.json').exists()


def test_mock_cifar10_train_save_restore_same_metrics(tiny_config, tmp_path):
  config = tiny_config
  config.dataset = 'cifar10'
  config.model.patch_size = 4
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.num_train_steps = 3
  config.eval_batch_size = 16
  with tfds.testing.mock_data(num_examples=70):
    results = train.train_and_evaluate(config, str(tmp_path))
    evaluated = evaluation.evaluate(config, str(tmp_path))
  assert results['num_test_examples'] == 70
  assert evaluated['test_accuracy'] == results['test_accuracy']
  assert evaluated['test_loss'] == pytest.approx(results['test_loss'], rel=1e-6)


def test_interrupted_run_resumes_bitwise(tiny_config, tmp_path, monkeypatch):
  tiny_config.augment.crop_padding = 2
  tiny_config.augment.flip = True
  tiny_config.num_train_steps = 8
  resume_check.assert_sigterm_resume_is_bitwise(tiny_config, tmp_path, monkeypatch, 4)


def test_resume_reads_the_same_batches(tiny_config):
  config = tiny_config
  config.augment.crop_padding = 2
  config.augment.flip = True
  experiment = experiment_lib.create_experiment(config)
  data = input_pipeline.create_train_data(experiment)
  steps = data.steps_per_epoch + 3  # across an epoch boundary
  from_start = [b['image'] for _, b in zip(range(steps), data.iterate(0))]
  resumed = [b['image'] for _, b in zip(range(5), data.iterate(steps - 5))]
  for a, b in zip(from_start[-5:], resumed):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(from_start[0], from_start[data.steps_per_epoch])


def test_eval_counts_every_example_once(tiny_config):
  config = tiny_config
  config.dataset = 'cifar10'
  config.eval_batch_size = 16
  with tfds.testing.mock_data(num_examples=37):
    experiment = experiment_lib.create_experiment(config)
    eval_data = input_pipeline.create_eval_data(experiment)
    batches = list(eval_data.iterate())
  assert len(batches) == 3
  assert sum(b['mask'].sum() for b in batches) == 37
  assert batches[-1]['mask'][:5].all() and not batches[-1]['mask'][5:].any()


@pytest.mark.parametrize('field,value,match', [
    ('dataset', 'imagenet21k', 'Unknown dataset'),
    ('mode', 'spatial', 'Unknown mode'),
    ('model.name', 'vit', 'Unknown model.name'),
    ('task', 'segmentation', 'Unknown task'),
    ('dtype', 'float16', 'Unknown dtype'),
    ('frozen_collections', 'spatial,attention', 'Cannot freeze'),
])
def test_bad_config_is_a_one_line_error(tiny_config, field, value, match):
  sweep.set_field(tiny_config, field, value)
  with pytest.raises(ValueError, match=match) as error:
    experiment_lib.create_experiment(tiny_config)
  assert '\n' not in str(error.value)


def test_unprepared_dataset_is_a_one_line_error(tiny_config, tmp_path):
  tiny_config.dataset = 'cifar10'
  tiny_config.data_dir = str(tmp_path)
  with pytest.raises(tfds_builders.DatasetNotPreparedError, match='tfds build cifar10'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'work'))
  assert not (tmp_path / 'work').exists()


def test_eval_without_checkpoint_is_an_error(tiny_config, tmp_path):
  with pytest.raises(checkpointing.NoCheckpointError, match='train first'):
    evaluation.evaluate(tiny_config, str(tmp_path))


def test_checkpoint_of_other_architecture_is_refused_untouched(tiny_config, trained_digits):
  workdir, _ = trained_digits  # tiny_config, trained
  before = sorted(os.listdir(workdir / 'checkpoints'))
  tiny_config.model.width = 24
  with pytest.raises(checkpointing.ArchitectureMismatchError, match='different architecture'):
    train.train_and_evaluate(tiny_config, str(workdir))
  with pytest.raises(checkpointing.ArchitectureMismatchError):
    evaluation.evaluate(tiny_config, str(workdir))
  assert sorted(os.listdir(workdir / 'checkpoints')) == before


def test_unwritable_workdir_is_an_error(tiny_config, tmp_path):
  # A regular file where a folder must go is unwritable even for root (CI runs as root).
  (tmp_path / 'a_file').write_text('')
  with pytest.raises(PermissionError, match='not writable'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'a_file' / 'run'))


def test_nan_loss_stops_training(tiny_config, tmp_path):
  tiny_config.optimizer.learning_rate = 1e30
  tiny_config.optimizer.schedule = 'constant'
  with pytest.raises(FloatingPointError, match='not finite'):
    train.train_and_evaluate(tiny_config, str(tmp_path))


def test_total_steps_from_epochs_or_steps(tiny_config):
  tiny_config.num_train_steps = -1
  tiny_config.num_epochs = 3
  assert train_state.total_train_steps(tiny_config, 22) == 66
  tiny_config.num_train_steps = 5
  assert train_state.total_train_steps(tiny_config, 22) == 5
