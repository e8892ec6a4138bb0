"""Two JAX processes × 4 CPU devices (jax.distributed on localhost, gloo collectives) against
one process × 8 devices, both through main.py.

A multi-host run cannot see the same batches as a single-host one (each process shuffles its
own part of the split), so the workers record the local batches they fed and the reference
replays their concatenation: any difference left is multi-host plumbing (global arrays,
collectives, per-process checkpoint writes, eval totals), which is what is under test.
"""

import glob
import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp

from conftest import REPO_ROOT

STEPS = 4
_FLAGS = ['--config=configs/default.py', '--config.model.width=8', '--config.model.depth=1',
          '--config.model.depthwise_impl=xla',
          '--config.batch_size=32', '--config.eval_batch_size=120',
          f'--config.num_train_steps={STEPS}', '--config.checkpoint_every_steps=2',
          '--config.log_every_steps=2']

_DRIVER = textwrap.dedent('''
    """Runs main.py's main() with TrainData.iterate recording (worker) or replaying (reference)."""
    import glob, json, os, sys
    import numpy as np
    sys.path.insert(0, os.getcwd())
    from absl import app
    import main
    from spatialmix_jax.data import input_pipeline, tfds_builders

    role, out = sys.argv[1], sys.argv[2]
    sys.argv = ['main.py'] + sys.argv[3:]
    original_iterate = input_pipeline.TrainData.iterate
    original_load_split = tfds_builders.load_split

    def recording_iterate(self, start_step=0):
      import jax
      for step, batch in enumerate(original_iterate(self, start_step), start_step + 1):
        np.savez(os.path.join(out, f'batch_{step}_process_{jax.process_index()}.npz'), **batch)
        yield batch

    def replaying_iterate(self, start_step=0):
      step = start_step + 1
      while True:
        parts = [np.load(p) for p in sorted(glob.glob(os.path.join(out, f'batch_{step}_process_*.npz')))]
        assert len(parts) == 2, step
        yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0].files}
        step += 1

    def recording_load_split(builder, split, **kwargs):
      # The example ids behind every split expression this process reads.
      import jax
      import tensorflow_datasets as tfds
      ids = [x['tfds_id'].decode() for x in builder.as_dataset(
          split=split, read_config=tfds.ReadConfig(add_tfds_id=True)).as_numpy_iterator()]
      name = getattr(split, 'split', None) or str(split).split('[')[0]  # tfds _EvenSplit
      with open(os.path.join(out, f'ids_{name}_process_{jax.process_index()}.json'), 'w') as f:
        json.dump({'split': str(split), 'ids': ids}, f)
      return original_load_split(builder, split, **kwargs)

    if role == 'worker':
      input_pipeline.TrainData.iterate = recording_iterate
      tfds_builders.load_split = recording_load_split
    else:
      input_pipeline.TrainData.iterate = replaying_iterate
    app.run(main.main)
''')


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices):
  return dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')


def _checkpoint(workdir, step):
  """Every array of a step, onto this process's one device (it was saved over 8)."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'default')
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        getattr(metadata, 'item_metadata', metadata))
  return jax.device_get(checkpointer.restore(path, target))


def _results(workdir):
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def test_two_processes_match_one_process(tmp_path):
  driver = tmp_path / 'driver.py'
  driver.write_text(_DRIVER)
  record = tmp_path / 'record'
  record.mkdir()
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')
  port = _free_port()
  logs = [open(tmp_path / f'process_{i}.log', 'w+') for i in range(2)]
  workers = [
      subprocess.Popen([sys.executable, str(driver), 'worker', str(record), f'--workdir={multi}',
                        *_FLAGS, '--num_processes=2', f'--process_id={i}',
                        f'--coordinator_address=localhost:{port}'],
                       cwd=REPO_ROOT, env=_env(4), stdout=subprocess.DEVNULL, stderr=logs[i])
      for i in range(2)]
  codes = [w.wait(timeout=300) for w in workers]
  for code, log in zip(codes, logs):
    log.seek(0)
    assert code == 0, log.read()[-3000:]
  logs[0].seek(0)
  assert 'JAX process 0 of 2, 4 local / 8 global devices' in logs[0].read()

  reference = subprocess.run(
      [sys.executable, str(driver), 'reference', str(record), f'--workdir={single}', *_FLAGS],
      cwd=REPO_ROOT, env=_env(8), capture_output=True, text=True, timeout=300)
  assert reference.returncode == 0, reference.stderr[-3000:]
  assert 'JAX process 0 of 1, 8 local / 8 global devices' in reference.stderr

  # Each process read a disjoint part of each split; together the parts cover it
  # (train drops the one example that does not divide evenly).
  for split, total, covered in (('train', 1437, 1436), ('test', 360, 360)):
    parts = [json.loads((record / f'ids_{split}_process_{i}.json').read_text()) for i in (0, 1)]
    ids = [set(p['ids']) for p in parts]
    assert parts[0]['split'] != parts[1]['split']
    assert not ids[0] & ids[1], split
    assert len(ids[0] | ids[1]) == covered and abs(len(ids[0]) - len(ids[1])) <= 1, split
    assert covered <= total

  # Local batches of 16 per process (global 32), different across processes.
  first = [np.load(record / f'batch_1_process_{i}.npz') for i in (0, 1)]
  assert all(b['image'].shape[0] == 16 for b in first)
  assert not np.array_equal(first[0]['image'], first[1]['image'])

  # Same training: every array of the final state, up to collective summation order (which
  # Adam's normalised updates magnify for near-zero gradients).
  expected, got = _checkpoint(single, STEPS), _checkpoint(multi, STEPS)
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # Orbax wrote from both processes.
  step_dir = os.path.join(multi, 'checkpoints', str(STEPS), 'default')
  assert os.path.isdir(os.path.join(step_dir, 'ocdbt.process_0'))
  assert os.path.isdir(os.path.join(step_dir, 'ocdbt.process_1'))

  # Same evaluation: test totals are summed over both processes' halves of the test split.
  multi_results, single_results = _results(multi), _results(single)
  assert multi_results['num_test_examples'] == single_results['num_test_examples'] == 360
  assert multi_results['devices'] == 8
  assert multi_results['test_accuracy'] == single_results['test_accuracy']
  np.testing.assert_allclose(multi_results['test_loss'], single_results['test_loss'], rtol=1e-5)
  # Only process 0 writes metrics: one TensorBoard event file, one results.json.
  assert len(glob.glob(os.path.join(multi, 'events.out.tfevents.*'))) == 1
