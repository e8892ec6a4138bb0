"""The bitwise-resume check shared by the trainer's and the augmentation's tests."""

import os
import signal

import jax
import numpy as np
import pytest

from spatialmix_jax.training import checkpointing
from spatialmix_jax.jobs import evaluation
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.jobs import train


def assert_sigterm_resume_is_bitwise(config, tmp_path, monkeypatch, interrupt_at):
  """Trains `config` once straight through and once with a real SIGTERM delivered while
  batch `interrupt_at` is read; the trainer must save that step, exit 75, and the restart
  must end with bitwise the same weights."""
  config.checkpoint_every_steps = 100  # only the preemption and the end save
  uninterrupted = tmp_path / 'uninterrupted'
  train.train_and_evaluate(config, str(uninterrupted))

  original_iterate = input_pipeline.TrainData.iterate

  def iterate_then_signal(self, start_step=0):
    for consumed, batch in enumerate(original_iterate(self, start_step), start_step + 1):
      if consumed == interrupt_at:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  interrupted = tmp_path / 'interrupted'
  monkeypatch.setattr(input_pipeline.TrainData, 'iterate', iterate_then_signal)
  with pytest.raises(SystemExit) as exit_info:
    train.train_and_evaluate(config, str(interrupted))
  assert exit_info.value.code == train.PREEMPTED_EXIT_CODE
  assert checkpointing.Checkpoints(str(interrupted)).steps() == [interrupt_at]
  monkeypatch.setattr(input_pipeline.TrainData, 'iterate', original_iterate)
  train.train_and_evaluate(config, str(interrupted))

  experiment = experiment_lib.create_experiment(config)
  expected, _ = evaluation.restore_for_eval(config, str(uninterrupted), experiment)
  resumed, step = evaluation.restore_for_eval(config, str(interrupted), experiment)
  assert step == config.num_train_steps
  for a, b in zip(jax.tree.leaves(jax.device_get(expected.weights)),
                  jax.tree.leaves(jax.device_get(resumed.weights))):
    np.testing.assert_array_equal(a, b)
