"""Orbax checkpoints of the train state under `WORKDIR/checkpoints/`.

Orbax writes each step to a temporary folder and renames it when complete, so a step is never
half-written by us; but it still lists a step whose files were later damaged, and a failed
restore floods stderr. `restore_latest` therefore checks the architecture first (a one-line
error), then tries steps newest first with stderr held back, and falls back to the previous
step with one warning line naming the bad one.
"""

import contextlib
import gc
import os
import tempfile
import time

import jax
import orbax.checkpoint as ocp
from absl import logging

from spatialmix_jax.infra import errors

# Raised here and by init_from.py; defined with the project's other user-facing errors.
ArchitectureMismatchError = errors.ArchitectureMismatchError
NoCheckpointError = errors.NoCheckpointError


def _shape_table(tree):
  """{'weights/spatial/...': shape} of the parts that define the architecture."""
  table = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path]
    if keys and keys[0] in ('weights', 'batch_stats'):
      table['/'.join(keys)] = tuple(leaf.shape)
  return table


@contextlib.contextmanager
def _stderr_held_back():
  """Sends fd 2 to a temporary file for the duration (Orbax/TensorStore failures are long)."""
  saved = os.dup(2)
  with tempfile.TemporaryFile() as sink:
    os.dup2(sink.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


class Checkpoints:
  """Saving and restoring the train state of one workdir."""

  def __init__(self, workdir, keep=3, create=True):
    # abspath would turn gs://bucket/run into ./gs:/bucket/run.
    root = workdir if '://' in workdir else os.path.abspath(workdir)
    self.directory = os.path.join(root, 'checkpoints')
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                             enable_async_checkpointing=True),
        # Named up front so a fresh process can read metadata before any save or restore.
        item_handlers=ocp.StandardCheckpointHandler())
    self._unreadable = set()

  def steps(self):
    return sorted(self._manager.all_steps())

  def save(self, step, state):
    if step in self._unreadable:
      # Orbax refuses to overwrite a step. The damaged one is removed only now that the
      # retrained state replaces it, so a read that failed transiently never costs a checkpoint.
      self._manager.delete(int(step))
      self._unreadable.discard(step)
    self._manager.save(int(step), args=ocp.args.StandardSave(state), force=True)

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()

  def check_architecture(self, step, abstract_state):
    try:
      saved = _shape_table(self._manager.item_metadata(step))
    except Exception:  # pylint: disable=broad-except
      return  # unreadable metadata: the restore below reports the damaged step
    expected = _shape_table(abstract_state)
    if saved != expected:
      differing = sorted(set(saved.items()) ^ set(expected.items()))
      name, _ = differing[0]
      raise ArchitectureMismatchError(
          f'The checkpoint at step {step} in {self.directory} was written by a different '
          f'architecture (first difference: {name}: checkpoint {saved.get(name)} vs config '
          f'{expected.get(name)}); use the config it was trained with or a new --workdir.')

  def restore(self, step, abstract_state):
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def restore_latest(self, abstract_state, step=None):
    """(state, step) from `step` or the newest readable step; (None, None) when there is none.

    An explicitly requested step must be readable; otherwise damaged newer steps are skipped
    with a warning (a preempted or corrupted write must not cost the whole run).
    """
    steps = self.steps()
    if step is not None:
      if step not in steps:
        raise NoCheckpointError(
            f'No checkpoint at step {step} in {self.directory}; saved steps: {steps}.')
      self.check_architecture(step, abstract_state)
      return self.restore(step, abstract_state), step
    state, restored_step, unreadable = None, None, []
    # Held back across the fallback restore too: a failed restore leaves sibling TensorStore
    # reads in flight whose errors (asyncio "exception never retrieved", callbacks on a closed
    # loop; pages each) surface moments later.
    with _stderr_held_back():
      for candidate in reversed(steps):
        self.check_architecture(candidate, abstract_state)
        try:
          state, restored_step = self.restore(candidate, abstract_state), candidate
          break
        except Exception as e:  # pylint: disable=broad-except
          unreadable.append((candidate, str(e).splitlines()[0][:200] if str(e) else
                             type(e).__name__))
      if unreadable:
        time.sleep(1.0)
        gc.collect()
    self._unreadable.update(candidate for candidate, _ in unreadable)
    for candidate, reason in unreadable:
      logging.warning('Checkpoint step %d in %s is unreadable (%s); falling back to the '
                      'previous one.', candidate, self.directory, reason)
    if restored_step is not None:
      return state, restored_step
    if steps:
      raise NoCheckpointError(f'No readable checkpoint in {self.directory} (steps {steps} are '
                              'all damaged); start a new --workdir.')
    return None, None
