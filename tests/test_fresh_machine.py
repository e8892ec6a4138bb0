"""A new user's machine: the README's default command from an empty cache, the embedded dataset
prepared safely (killed mid-way, two runs at once), and a new user's first mistakes as one
line each."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT

# Prints (on its last line; TFDS reports its preparation on stdout before) the train split's
# size and the number of test examples actually read.
_READ_DIGITS = ("from spatialmix_jax.data import tfds_builders; "
                "builder = tfds_builders.get_builder('digits'); "
                "print(builder.info.splits['train'].num_examples, "
                "len(list(builder.as_dataset(split='test'))))")


def _env(cache, home):
  """A fresh user's environment: nothing but PATH, an empty HOME and an empty cache root."""
  return {'PATH': os.environ['PATH'], 'HOME': str(home), 'SPATIALMIX_CACHE_DIR': str(cache),
          'TFDS_DATA_DIR': str(home / 'tensorflow_datasets'), 'JAX_PLATFORMS': 'cpu',
          'PYTHONPATH': REPO_ROOT}


def _readme_train_command():
  """The `python main.py ...` part of the README's first command."""
  with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    block = re.search(r'```bash\n(.*?)\n```', f.read(), re.S).group(1)
  command = next(part.strip() for part in block.split('&&') if 'main.py' in part)
  return shlex.split(command)


def test_readme_default_command_trains_from_an_empty_cache(tmp_path):
  argv = _readme_train_command()
  assert argv[:2] == ['python', 'main.py']
  workdir = tmp_path / 'run'
  argv = [sys.executable, 'main.py'] + [a for a in argv[2:] if not a.startswith('--workdir')]
  completed = subprocess.run(
      argv + [f'--workdir={workdir}', '--config.num_train_steps=100'], cwd=REPO_ROOT,
      env=_env(tmp_path / 'cache', tmp_path / 'home'), capture_output=True, text=True,
      timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert 'Results:' in completed.stderr
  results = json.loads((workdir / 'results.json').read_text())
  assert results['num_test_examples'] == 360 and results['test_accuracy'] >= 0.9
  # Everything the project writes outside the workdir went to the cache root.
  assert (tmp_path / 'cache' / 'tensorflow_datasets' / 'digits').is_dir()
  assert not (tmp_path / 'home' / '.cache' / 'spatialmix_jax').exists()


def _digits_dir(cache):
  return cache / 'tensorflow_datasets' / 'digits' / '1.0.0'


def _read_digits(cache, home):
  return subprocess.Popen([sys.executable, '-c', _READ_DIGITS], cwd=REPO_ROOT,
                          env=_env(cache, home), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def test_a_half_prepared_dataset_is_rebuilt(tmp_path):
  cache = tmp_path / 'cache'
  # What a run killed while an older layout prepared in place leaves: no dataset_info.json.
  _digits_dir(cache).mkdir(parents=True)
  (_digits_dir(cache) / 'digits-train.tfrecord-00000-of-00001').write_bytes(b'torn')
  stale = cache / 'tensorflow_datasets' / 'digits-preparing-killed'
  stale.mkdir()
  out, err = _read_digits(cache, tmp_path).communicate(timeout=300)
  assert out.split()[-2:] == ['1437', '360'], err[-2000:]
  assert (_digits_dir(cache) / 'dataset_info.json').exists() and not stale.exists()


def test_killed_preparation_leaves_nothing_half_done_and_the_next_run_recovers(tmp_path):
  cache = tmp_path / 'cache'
  staging = cache / 'tensorflow_datasets'
  for _ in range(5):  # until the kill lands while the dataset is being prepared
    process = _read_digits(cache, tmp_path)
    while process.poll() is None and not (staging.exists() and any(
        p.name.startswith('digits-preparing-') for p in staging.iterdir())):
      time.sleep(0.002)
    if process.poll() is None:
      process.send_signal(signal.SIGKILL)
      process.wait()
      break
    # Prepared before the kill could land: start again from an empty cache.
    subprocess.run(['rm', '-rf', str(cache)], check=True)
  else:
    pytest.fail('preparation always finished before it could be killed')
  assert not (_digits_dir(cache) / 'dataset_info.json').exists()
  out, err = _read_digits(cache, tmp_path).communicate(timeout=300)
  assert out.split()[-2:] == ['1437', '360'], err[-2000:]


def test_two_runs_preparing_at_once_both_read_a_whole_dataset(tmp_path):
  processes = [_read_digits(tmp_path / 'cache', tmp_path) for _ in range(2)]
  for process in processes:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0 and out.split()[-2:] == ['1437', '360'], err[-2000:]


@pytest.mark.parametrize('args,message', [
    (['--config.learning_rate=0.1'], 'did you mean --config.optimizer.learning_rate'),
    (['--config.mdoe=full'], 'did you mean --config.mode'),
    (['--config=configs/defualt.py'], "no such file; choose one of configs/base.py"),
    (['--config.model.patch_size=64'], 'model.patch_size 64 is larger than the 8×8 images'),
    (['--config.num_train_steps=-5'], 'num_train_steps must be an integer >= 1, or -1'),
    (['--config.num_train_steps=abc'], "--config.num_train_steps=abc: invalid literal"),
    (['--config.optimizer.learning_rate=nan'], 'optimizer.learning_rate is nan'),
    (['--config.optimizer.weight_decay=-1'], 'optimizer.weight_decay must be >= 0'),
    (['--config.model.width=0'], 'model.width must be an integer >= 1'),
    (['--mode=eval'], '--job=train|eval'),
    (['--config.mode=chans', '--config.model.name=resnet_cifar', '--config.model.depth=8'],
     "has no depthwise (spatial) filters"),
    (['--config.model.depth_multiplier=9'],
     'model.depth_multiplier=9 does nothing for convmixer, whose fields are model.width'),
])
def test_first_mistakes_are_one_line_errors_before_any_compute(tmp_path, args, message):
  config = [a for a in args if a.startswith('--config=')] or ['--config=configs/default.py']
  argv = [sys.executable, 'main.py', *config, f'--workdir={tmp_path / "run"}',
          *[a for a in args if not a.startswith('--config=')]]
  completed = subprocess.run(argv, cwd=REPO_ROOT, env=_env(tmp_path / 'cache', tmp_path),
                             capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 2, completed.stderr[-2000:]
  lines = completed.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), completed.stderr[-2000:]
  assert message in lines[0]
  assert not (tmp_path / 'run').exists() and not (tmp_path / 'cache').exists()


def test_an_unwritable_cache_root_names_the_variable_to_set(tmp_path):
  (tmp_path / 'a_file').write_text('')  # a folder cannot be made under a file, even as root
  completed = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/default.py', f'--workdir={tmp_path / "run"}'],
      cwd=REPO_ROOT, env=_env(tmp_path / 'a_file' / 'cache', tmp_path), capture_output=True,
      text=True, timeout=300, check=False)
  assert completed.returncode == 2
  last = completed.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and 'set SPATIALMIX_CACHE_DIR' in last
  assert 'Traceback' not in completed.stderr and not (tmp_path / 'run').exists()
