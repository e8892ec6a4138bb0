"""launch/tpu_vm.sh against a fake `gcloud` on PATH that records its argv (and, for `ssh`,
can run the remote command in a sandbox HOME): the commands it sends, the preemption
recovery path, and one-line errors that send nothing."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, 'launch', 'tpu_vm.sh')
NODE = ['--name=cm-run', '--zone=us-central2-b']
CREATE = ['--accelerator=v4-32', '--runtime=tpu-ubuntu2204-base']
RUN = ['--bucket=gs://some-bucket', '--config=configs/convmixer_imagenet.py']

_FAKE_GCLOUD = textwrap.dedent('''\
    #!{python}
    import json, os, subprocess, sys
    args = sys.argv[1:]
    with open(os.environ['FAKE_GCLOUD_LOG'], 'a') as f:
      f.write(json.dumps(args) + '\\n')
    if 'describe' in args:  # states are consumed in order; the last one stays
      path = os.environ['FAKE_GCLOUD_STATES']
      states = open(path).read().split()
      if len(states) > 1:
        open(path, 'w').write('\\n'.join(states[1:]))
      if states[0] == 'NOT_FOUND':
        sys.exit('ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND')
      print(states[0])
    if 'ssh' in args and os.environ.get('FAKE_GCLOUD_EXEC'):
      command = [a for a in args if a.startswith('--command=')][0][len('--command='):]
      sys.exit(subprocess.run(['bash', '-c', command]).returncode)
''')


@pytest.fixture
def gcloud(tmp_path, monkeypatch):
  """The fake: returns a function that reads back the recorded calls."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  fake = bin_dir / 'gcloud'
  fake.write_text(_FAKE_GCLOUD.format(python=sys.executable))
  fake.chmod(0o755)
  log = tmp_path / 'gcloud.log'
  log.write_text('')
  monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
  monkeypatch.setenv('FAKE_GCLOUD_LOG', str(log))
  monkeypatch.setenv('FAKE_GCLOUD_STATES', str(tmp_path / 'states'))
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  (tmp_path / 'states').write_text('READY')
  return lambda: [json.loads(line) for line in log.read_text().splitlines()]


def _launch(*args, env=None):
  return subprocess.run(['bash', SCRIPT, *args], capture_output=True, text=True, timeout=60,
                        env=env, cwd=REPO_ROOT)


def _verbs(calls):
  """('tpu-vm', 'ssh') style pairs: what each gcloud call does."""
  return [tuple(c[2:4]) for c in calls]


def _flag(call, name):
  values = [a.split('=', 1)[1] for a in call if a.startswith(f'--{name}=')]
  assert len(values) == 1, (name, call)
  return values[0]


def test_dry_run_prints_spot_create_and_runs_nothing(gcloud):
  out = _launch('create', *NODE, *CREATE, '--spot', '--project=p-1', '--dry-run')
  assert out.returncode == 0, out.stderr
  assert gcloud() == []  # printed, not run
  commands = [shlex.split(line) for line in out.stdout.splitlines()]
  create = commands[0]
  assert create[:5] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create']
  assert create[5] == 'cm-run' and '--spot' in create
  assert _flag(create, 'node-id') == 'cm-run'
  assert _flag(create, 'accelerator-type') == 'v4-32'
  assert _flag(create, 'runtime-version') == 'tpu-ubuntu2204-base'
  assert _flag(create, 'zone') == 'us-central2-b' and _flag(create, 'project') == 'p-1'
  # A queued resource is granted later: the script polls its state before returning.
  assert commands[1][3:5] == ['tpu-vm', 'describe']


def test_flags_take_their_value_after_a_space_too(gcloud):
  spaced = []
  for flag in [*NODE, *CREATE, '--project=p-1']:
    spaced += flag.split('=', 1)
  out = _launch('create', *spaced, '--spot', '--dry-run')
  expected = _launch('create', *NODE, *CREATE, '--project=p-1', '--spot', '--dry-run')
  assert out.returncode == 0, out.stderr
  assert out.stdout == expected.stdout and 'v4-32' in out.stdout


def test_dry_run_run_targets_all_workers_with_bucket_paths(gcloud):
  out = _launch('run', *NODE, *RUN, '--dry-run', '--', '--config.mode=chans',
                '--config.model.depth=12')
  assert out.returncode == 0, out.stderr
  assert gcloud() == []
  [ssh] = [shlex.split(line) for line in out.stdout.splitlines()]
  assert ssh[3:6] == ['tpu-vm', 'ssh', 'cm-run'] and _flag(ssh, 'worker') == 'all'
  remote = _flag(ssh, 'command')
  assert 'nohup' in remote and '~/spatialmix-train.log' in remote
  assert 'TFDS_DATA_DIR=gs://some-bucket/tensorflow_datasets' in remote
  for part in ('main.py', '--workdir=gs://some-bucket/spatialmix/cm-run', '--distributed=yes',
               '--config.mode=chans', '--config.model.depth=12'):
    assert part in remote.replace('\\', ''), part


def test_run_command_really_starts_the_trainer(gcloud, tmp_path, monkeypatch):
  # Execute the remote command in a sandbox HOME whose "python" records how it was called
  # and exits 75 (preempted): the nested quoting must survive two shells.
  home = tmp_path / 'home'
  venv_bin = home / 'spatialmix-jax' / '.venv' / 'bin'
  venv_bin.mkdir(parents=True)
  (venv_bin / 'python').write_text(
      '#!/usr/bin/env bash\n'
      'printf "%s\\n" "$@" > "$HOME/argv"; echo "$TFDS_DATA_DIR" > "$HOME/data_dir"; exit 75\n')
  (venv_bin / 'python').chmod(0o755)
  monkeypatch.setenv('HOME', str(home))
  monkeypatch.setenv('FAKE_GCLOUD_EXEC', '1')
  out = _launch('run', *NODE, *RUN, '--workdir=gs://some-bucket/runs/a b', '--',
                "--config.model.name=convmixer", "--config.frozen_collections=spatial,stem")
  assert out.returncode == 0, out.stderr
  deadline = time.time() + 20
  while not (home / 'spatialmix-train.exit').exists() and time.time() < deadline:
    time.sleep(0.1)
  assert (home / 'spatialmix-train.exit').read_text().strip() == '75'
  assert (home / 'argv').read_text().splitlines() == [
      'main.py', '--config=configs/convmixer_imagenet.py',
      '--workdir=gs://some-bucket/runs/a b', '--distributed=yes',
      '--config.model.name=convmixer', '--config.frozen_collections=spatial,stem']
  assert (home / 'data_dir').read_text().strip() == 'gs://some-bucket/tensorflow_datasets'


def test_resume_recreates_a_preempted_spot_node_and_resumes_its_workdir(gcloud, tmp_path):
  (tmp_path / 'states').write_text('PREEMPTED\nWAITING_FOR_RESOURCES\nREADY')
  out = _launch('resume', *NODE, *CREATE, *RUN, '--spot', '--poll-seconds=0', '--',
                '--config.mode=chans')
  assert out.returncode == 0, out.stderr
  calls = gcloud()
  assert _verbs(calls) == [
      ('tpu-vm', 'describe'),
      ('queued-resources', 'delete'),
      ('queued-resources', 'create'),
      ('tpu-vm', 'describe'), ('tpu-vm', 'describe'),  # waits for READY
      ('tpu-vm', 'scp'),
      ('tpu-vm', 'ssh'),  # setup
      ('tpu-vm', 'ssh'),  # run
  ]
  # Only the named node is touched (scp names it as the copy's destination).
  assert all(c[4] == 'cm-run' for c in calls if c[3] != 'scp')
  assert '--spot' in calls[2] and '--force' in calls[1]
  scp, setup, run = calls[5:]
  assert _flag(scp, 'worker') == _flag(setup, 'worker') == _flag(run, 'worker') == 'all'
  assert "pip install -q -c constraints.txt -e '.[tpu]'" in _flag(setup, 'command')
  assert '--workdir=gs://some-bucket/spatialmix/cm-run' in _flag(run, 'command')
  assert '--config.mode=chans' in _flag(run, 'command')
  # The copied checkout: the project, not its virtual environment.
  archive, destination = scp[4:6]
  assert destination.startswith('cm-run:')
  listing = subprocess.run(['tar', '-tzf', archive], capture_output=True, text=True).stdout
  assert 'main.py' in listing.split() and 'launch/tpu_vm.sh' in listing.split()
  assert '.venv/' not in listing


@pytest.mark.parametrize('state,expected', [
    ('READY', [('tpu-vm', 'describe'), ('tpu-vm', 'ssh')]),  # restart unless running
    ('CREATING', [('tpu-vm', 'describe')]),  # neither dead nor ready: wait
    ('NOT_FOUND', [('tpu-vm', 'describe'), ('tpu-vm', 'create'), ('tpu-vm', 'ssh'),
                   ('tpu-vm', 'ssh')]),  # nothing to delete
])
def test_resume_leaves_live_nodes_alone(gcloud, tmp_path, state, expected):
  (tmp_path / 'states').write_text(state)
  out = _launch('resume', *NODE, *CREATE, *RUN, '--repo=https://example.com/x.git')
  assert out.returncode == 0, out.stderr
  assert _verbs(gcloud()) == expected
  assert not any(verb == 'delete' for _, verb in _verbs(gcloud()))


def test_delete_needs_yes_and_deletes_only_the_named_node(gcloud):
  refused = _launch('delete', *NODE)
  assert refused.returncode == 2 and gcloud() == []
  assert refused.stderr.count('\n') == 1 and '--yes' in refused.stderr
  done = _launch('delete', *NODE, '--yes')
  assert done.returncode == 0, done.stderr
  [call] = gcloud()
  assert call[2:5] == ['tpu-vm', 'delete', 'cm-run'] and '--quiet' in call
  assert not any('gs://' in a for a in call)


@pytest.mark.parametrize('args,message', [
    (['create', *NODE, '--accelerator=v4-7', '--runtime=r'], "unknown accelerator type 'v4-7'"),
    (['create', *NODE, '--accelerator=v9-8', '--runtime=r'], 'v5litepod-'),
    (['create', '--zone=z', *CREATE], 'create needs --name'),
    (['run', *NODE, '--config=c.py'], 'run needs --bucket'),
    (['run', *NODE, '--bucket=/local/dir', '--config=c.py'], 'must be a gs:// path'),
    (['resume', *NODE, *RUN], 'resume needs --accelerator and --runtime'),
    (['create', *NODE, *CREATE, '--acclerator=v4-8'], "unknown flag '--acclerator=v4-8'"),
    (['create', *NODE, *CREATE, '--zone'], '--zone needs a value'),
    (['launch', *NODE], "unknown command 'launch'"),
])
def test_bad_arguments_are_one_line_errors(gcloud, args, message):
  out = _launch(*args)
  assert out.returncode == 2
  assert out.stderr.count('\n') == 1 and out.stderr.startswith('error: '), out.stderr
  assert message in out.stderr and 'usage: launch/tpu_vm.sh' in out.stderr
  assert gcloud() == []


@pytest.mark.skipif(shutil.which('shellcheck') is None, reason='shellcheck is not installed')
def test_shellcheck_clean():
  out = subprocess.run(['shellcheck', SCRIPT], capture_output=True, text=True)
  assert out.returncode == 0, out.stdout
