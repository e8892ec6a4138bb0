"""Data parallelism on 8 simulated CPU devices, in a subprocess (XLA flags bind at start-up)."""

import os
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

_SCRIPT = textwrap.dedent('''
    import dataclasses
    import jax, numpy as np
    from jax.sharding import Mesh
    from configs import default
    from spatialmix_jax.config import experiment as experiment_lib
    from spatialmix_jax.data import input_pipeline
    from spatialmix_jax.infra import sharding
    from spatialmix_jax.training import train_state, train_step
    assert jax.device_count() == 8
    config = default.get_config()
    config.model.width, config.model.depth, config.batch_size = 16, 2, 32
    losses = []
    for devices in (jax.devices()[:1], jax.devices()):
      experiment = dataclasses.replace(experiment_lib.create_experiment(config),
                                       mesh=Mesh(np.asarray(devices), (sharding.DATA_AXIS,)))
      data = input_pipeline.create_train_data(experiment)
      tx, _ = train_state.create_optimizer(experiment, 10, data.steps_per_epoch)
      state = train_state.init_state(experiment, tx)
      step = train_step.compile_train_step(experiment, tx)
      batches = data.iterate(0)
      for _ in range(3):  # the third loss depends on two updates and BatchNorm statistics
        state, metrics = step(state, sharding.global_batch(next(batches), experiment.mesh))
      losses.append(float(metrics['loss']) / float(metrics['count']))
    print('LOSSES', *losses)
    config.batch_size = 20  # the Experiment holds a frozen copy: build a new one
    try:
      input_pipeline.create_train_data(experiment_lib.create_experiment(config))
    except ValueError as e:
      print('ERROR', e)
''')


def test_eight_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run([sys.executable, '-c', _SCRIPT], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = dict(line.split(' ', 1) for line in out.stdout.splitlines() if ' ' in line)
  one, eight = map(float, lines['LOSSES'].split())
  assert abs(one - eight) <= 1e-5, (one, eight)
  assert 'not divisible by the 8 devices' in lines['ERROR']
