"""Spot capacity, for real: `python main.py` processes that are signalled, restarted and resumed
from damaged checkpoints (tests/test_train.py covers the same logic in-process)."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO_ROOT

PREEMPTED_EXIT_CODE = 75  # train.PREEMPTED_EXIT_CODE, without importing TensorFlow here
STEPS = 24
_FLAGS = ['--config=configs/default.py', '--config.model.width=8', '--config.model.depth=1',
          '--config.model.depthwise_impl=xla',
          '--config.batch_size=32', '--config.eval_batch_size=120',
          f'--config.num_train_steps={STEPS}', '--config.checkpoint_every_steps=8',
          '--config.log_every_steps=1']


def _command(workdir):
  return [sys.executable, 'main.py', f'--workdir={workdir}', *_FLAGS]


def _env():
  return dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
              XLA_FLAGS='--xla_force_host_platform_device_count=1')


def _run(workdir):
  return subprocess.run(_command(workdir), cwd=REPO_ROOT, env=_env(), capture_output=True,
                        text=True, timeout=300)


def _saved_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def _checkpoint(workdir, step):
  """Everything a step holds (weights, BatchNorm statistics, optimizer state), as numpy."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'default')
  return jax.device_get(ocp.StandardCheckpointer().restore(path))


def _assert_same_tree(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """An uninterrupted run and, side by side, one that gets SIGTERM a few steps in."""
  root = tmp_path_factory.mktemp('runs')
  uninterrupted, interrupted = str(root / 'uninterrupted'), str(root / 'interrupted')
  reference_log = open(root / 'reference.log', 'w+')  # a file: a full pipe would block it
  reference = subprocess.Popen(_command(uninterrupted), cwd=REPO_ROOT, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=reference_log)
  victim = subprocess.Popen(_command(interrupted), cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  log = []
  for line in victim.stderr:
    log.append(line)
    if '] [3] ' in line:  # the logging writer's scalars of step 3: the loop is running
      victim.send_signal(signal.SIGTERM)
      break
  log.extend(victim.stderr)
  victim.stderr.close()
  victim_code = victim.wait(timeout=300)
  reference_code = reference.wait(timeout=300)
  reference_log.seek(0)
  assert reference_code == 0, reference_log.read()[-3000:]
  reference_log.close()
  return uninterrupted, interrupted, victim_code, ''.join(log)


def test_sigterm_saves_exits_75_and_restart_matches(runs):
  uninterrupted, interrupted, victim_code, log = runs
  assert victim_code == PREEMPTED_EXIT_CODE, log[-3000:]
  saved = _saved_steps(interrupted)
  assert 3 <= saved[-1] < STEPS, saved
  assert f'Preempted: saved step {saved[-1]}' in log
  assert not os.path.exists(os.path.join(interrupted, 'results.json'))

  restart = _run(interrupted)
  assert restart.returncode == 0, restart.stderr[-3000:]
  assert f'Resumed from checkpoint step {saved[-1]}' in restart.stderr
  _assert_same_tree(_checkpoint(uninterrupted, STEPS), _checkpoint(interrupted, STEPS))


def test_damaged_newest_checkpoint_falls_back_with_one_line(runs, tmp_path):
  uninterrupted = runs[0]
  workdir = str(tmp_path / 'damaged')
  shutil.copytree(uninterrupted, workdir)
  assert _saved_steps(workdir) == [8, 16, 24]
  with open(os.path.join(workdir, 'results.json')) as f:
    expected = json.load(f)

  # Orbax reads arrays through the step's top-level OCDBT database (default/d/); damaging only
  # the per-process copies (ocdbt.process_*/d/) goes unnoticed, so cut every data file.
  data_files = glob.glob(os.path.join(workdir, 'checkpoints', '24', 'default', '**', 'd', '*'),
                         recursive=True)
  assert any('/default/d/' in f for f in data_files), data_files
  for path in data_files:
    os.truncate(path, os.path.getsize(path) // 2)

  # The same command again: steps 17-24 are retrained from step 16 and step 24 is rewritten
  # (Orbax refuses to save over an existing step, damaged or not).
  again = _run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  lines = again.stderr.splitlines()
  warnings = [l for l in lines if 'unreadable' in l]
  assert len(warnings) == 1 and 'step 24' in warnings[0], warnings
  assert 'Resumed from checkpoint step 16' in again.stderr
  # Orbax/TensorStore failures run to pages; none of it may reach the log.
  assert not [l for l in lines if 'Traceback' in l or 'tensorstore' in l.lower()], lines[-20:]
  assert sum('OCDBT' in l for l in lines) == 1
  with open(os.path.join(workdir, 'results.json')) as f:
    resumed = json.load(f)
  assert resumed['step'] == STEPS
  assert resumed['test_loss'] == expected['test_loss']
  assert _saved_steps(workdir) == [8, 16, 24]
  _assert_same_tree(_checkpoint(uninterrupted, STEPS), _checkpoint(workdir, STEPS))
