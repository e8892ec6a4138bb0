"""Which failures are one line: the project's own errors (`infra/errors.py`), raised where
their checks are made, are one `error:` line and exit code 2; a library's exception, or a bug,
keeps its whole traceback, with the workdir and the step on its last line."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT
from spatialmix_jax.config import cli
from spatialmix_jax.infra import errors
from spatialmix_jax.jobs import train

_TINY_RUN = ['--config=configs/default.py', '--config.model.width=8', '--config.model.depth=1',
             '--config.batch_size=32', '--config.num_train_steps=4',
             '--config.log_every_steps=2', '--config.checkpoint_every_steps=2']

# main.py with a train step that first asks JAX to split the batch of 32 images into 5 equal
# parts: jax.numpy raises its own ValueError while the step is traced, as a shape bug would.
_BROKEN_STEP_DRIVER = textwrap.dedent('''
    import runpy, sys
    import jax.numpy as jnp
    from spatialmix_jax.training import train_step

    original = train_step.train_step

    def step_with_a_library_error(state, batch, **kwargs):
      jnp.split(batch['image'], 5)
      return original(state, batch, **kwargs)

    train_step.train_step = step_with_a_library_error
    sys.argv = ['main.py'] + sys.argv[1:]
    runpy.run_path('main.py', run_name='__main__')
''')


def _env(tmp_path):
  return {'PATH': os.environ['PATH'], 'HOME': str(tmp_path), 'JAX_PLATFORMS': 'cpu',
          'SPATIALMIX_CACHE_DIR': os.environ.get('SPATIALMIX_CACHE_DIR',
                                                 str(tmp_path / 'cache')),
          'PYTHONPATH': REPO_ROOT}


def _run(argv, tmp_path):
  return subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=_env(tmp_path),
                        capture_output=True, text=True, timeout=600, check=False)


def test_a_library_error_inside_a_training_step_keeps_its_traceback(tmp_path):
  workdir = tmp_path / 'run'
  completed = _run(['-c', _BROKEN_STEP_DRIVER, *_TINY_RUN, f'--workdir={workdir}'], tmp_path)
  assert completed.returncode not in (0, 2), completed.stderr[-3000:]
  lines = completed.stderr.strip().splitlines()
  assert 'Traceback (most recent call last):' in lines, completed.stderr[-3000:]
  assert not any(line.startswith('error: ') for line in lines)
  raised = next(i for i, line in enumerate(lines) if line.startswith('ValueError: '))
  assert 'array split does not result in an equal division' in lines[raised]
  assert 'step_with_a_library_error' in completed.stderr  # the frames are all there
  # The traceback's last line (after JAX's own note) says where the run was.
  assert lines[-1] == (f"[spatialmix_jax] while training at step 1 in workdir '{workdir}'; "
                       "last checkpoint: none.")


def test_a_project_error_during_training_is_one_line(tmp_path):
  empty = tmp_path / 'tensorflow_datasets'
  empty.mkdir()
  completed = _run(['main.py', *_TINY_RUN, '--config.dataset=mnist', f'--config.data_dir={empty}',
                    f'--workdir={tmp_path / "run"}'], tmp_path)
  assert completed.returncode == 2, completed.stderr[-3000:]
  last = completed.stderr.strip().splitlines()[-1]
  assert last.startswith("error: Dataset 'mnist' is not prepared under") and 'tfds build' in last
  assert 'Traceback' not in completed.stderr


def test_only_the_projects_errors_become_one_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    with cli.user_errors_as_one_line():
      raise errors.WorkdirError('Workdir is not writable;\nsecond line')
  assert exit_info.value.code == cli.USAGE_EXIT_CODE
  assert capsys.readouterr().err == 'error: Workdir is not writable;\n'
  for library_error in (ValueError('from a library'), PermissionError('from the OS'),
                        FloatingPointError('from numpy')):
    with pytest.raises(type(library_error)):
      with cli.user_errors_as_one_line():
        raise library_error


def test_every_project_error_is_a_user_error_and_keeps_its_builtin_type():
  builtin = {errors.ConfigError: ValueError, errors.DataError: ValueError,
             errors.WorkdirError: PermissionError, errors.CacheDirError: PermissionError,
             errors.CheckpointError: ValueError, errors.NoCheckpointError: ValueError,
             errors.ArchitectureMismatchError: ValueError, errors.NoResultsError: ValueError,
             errors.WeightsError: ValueError, errors.DivergedError: FloatingPointError}
  defined = {v for v in vars(errors).values() if isinstance(v, type)
             and issubclass(v, errors.UserError) and v is not errors.UserError}
  assert defined == set(builtin)
  for error_type, base in builtin.items():
    assert issubclass(error_type, base)


def test_a_non_finite_loss_is_the_users_one_line_error():
  with pytest.raises(errors.DivergedError, match='Loss is not finite at step 7.*step 5'):
    train._check_finite({'loss': float('nan')}, 7, 5)
