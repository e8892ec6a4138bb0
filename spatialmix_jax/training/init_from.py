"""Starting a new run from the weights of another workdir (`config.init_from`).

The source is any workdir with a checkpoint: an earlier run, or one written by
`python -m spatialmix_jax.interop.torch_weights import`. Only its `weights` and `batch_stats` are read,
never its optimizer state, whose structure depends on the mode it was trained in: the new run
starts at step 0 with a fresh optimizer state for its own mode. A run that already has its
own checkpoint resumes from that and ignores `init_from`.
"""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from spatialmix_jax.training import checkpointing
from spatialmix_jax.infra import sharding

# Model fields that change the computed function without changing any variable's shape, so
# the shape comparison alone would miss them.
_SHAPELESS_MODEL_FIELDS = ('name', 'act')


def read_weights(workdir, step=None):
  """(weights, batch_stats, step) of `workdir`'s checkpoint `step` (default: the latest), as
  numpy arrays, whatever optimizer state was saved beside them."""
  directory = os.path.join(workdir, 'checkpoints')
  if '://' not in workdir and not os.path.isdir(directory):
    raise checkpointing.NoCheckpointError(f'No checkpoint in {workdir!r} (no checkpoints/ '
                                          'folder): give a workdir that holds a trained or '
                                          'imported model.')
  # A PyTree handler: unlike the trainer's StandardCheckpointHandler it restores a subtree.
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(create=False),
      item_handlers=ocp.PyTreeCheckpointHandler())
  try:
    steps = manager.all_steps()
    if not steps:
      raise checkpointing.NoCheckpointError(f'No checkpoint in {directory}.')
    step = max(steps) if step is None else step
    if step not in steps:
      raise checkpointing.NoCheckpointError(
          f'No checkpoint at step {step} in {directory}; saved steps: {sorted(steps)}.')
    saved = manager.item_metadata(step)
    saved = getattr(saved, 'tree', saved)
    item = {part: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), saved[part])
            for part in ('weights', 'batch_stats')}
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item=item, restore_args=as_numpy, partial_restore=True))
  finally:
    manager.close()
  return restored['weights'], restored['batch_stats'], int(step)


def _saved_model_config(workdir):
  path = os.path.join(workdir, 'config.json')
  if '://' in workdir or not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f).get('model')


def _shape_table(weights, batch_stats):
  """{'weights/spatial/DepthwiseConv_0/kernel': shape, ...} (arrays or ShapeDtypeStructs)."""
  flat = jax.tree_util.tree_flatten_with_path({'weights': weights, 'batch_stats': batch_stats})
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(leaf.shape)
          for path, leaf in flat[0]}


def first_difference(weights, batch_stats, expected_weights, expected_batch_stats):
  """(variable path, shape here, shape expected) of the first mismatch, or None."""
  found = _shape_table(weights, batch_stats)
  expected = _shape_table(expected_weights, expected_batch_stats)
  if found == expected:
    return None
  name = sorted(set(found.items()) ^ set(expected.items()))[0][0]
  return name, found.get(name), expected.get(name)


def check_compatible(source, weights, batch_stats, state, model_config):
  """A one-line ArchitectureMismatchError unless `source`'s variables fit the new run."""
  difference = first_difference(weights, batch_stats, state.weights, state.batch_stats)
  if difference:
    name, there, here = difference
    raise checkpointing.ArchitectureMismatchError(
        f'init_from {source!r} holds another architecture (first difference: {name}: '
        f'{there} there vs {here} in this config).')
  saved_model = _saved_model_config(source) or {}
  for field in _SHAPELESS_MODEL_FIELDS:
    if field in saved_model and saved_model[field] != model_config[field]:
      raise checkpointing.ArchitectureMismatchError(
          f'init_from {source!r} was a model with {field}={saved_model[field]!r}, this config '
          f'has {field}={model_config[field]!r}; pass --config.model.{field}='
          f'{saved_model[field]}.')


def initialise(state, experiment, tx):
  """`state` (fresh, step 0) with weights and BatchNorm statistics from `config.init_from`,
  and an optimizer state initialised for them; `state` unchanged when it is unset."""
  source = experiment.config.get('init_from')
  if not source:
    return state
  weights, batch_stats, step = read_weights(source)
  check_compatible(source, weights, batch_stats, state, experiment.config.model)
  repl = sharding.replicated(experiment.mesh)

  def place(x):
    # From host memory on every process (each reads the same checkpoint), so it also works
    # when the mesh spans several hosts.
    return jax.make_array_from_callback(x.shape, repl, lambda index: x[index])

  weights, batch_stats = jax.tree.map(place, (weights, batch_stats))
  logging.info('Initialised from step %d of %s (weights and BatchNorm statistics).', step,
               source)
  return state.replace(weights=weights, batch_stats=batch_stats,
                       opt_state=jax.jit(tx.init, out_shardings=repl)(weights))


def initial_variables(experiment, state):
  """The variables a run started from, given its fresh step-0 `state`: its random init,
  overlaid with `config.init_from`'s weights when set; None when that source can no longer be
  read."""
  variables = {**state.weights, 'batch_stats': state.batch_stats}
  source = experiment.config.get('init_from')
  if not source:
    return variables
  try:
    weights, batch_stats, _ = read_weights(source)
  except (ValueError, OSError) as e:
    logging.warning('Cannot read init_from %r (%s): frozen collections are not compared.',
                    source, e)
    return None
  return {**variables, **weights, 'batch_stats': batch_stats}
