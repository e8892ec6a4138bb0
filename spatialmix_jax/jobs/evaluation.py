"""Evaluation of a trained run: `main.py --job=eval` restores a checkpoint of a workdir,
evaluates it exactly (every test example once, `eval_loop.py`), under attack when asked
(`attacks.py`), and writes WORKDIR/eval.json; `summary` is the record shared with
results.json."""

import json
import os
import time

import jax
from absl import logging
from etils import epath

from spatialmix_jax.objectives import attacks
from spatialmix_jax.training import checkpointing
from spatialmix_jax.config import config_schema
from spatialmix_jax.objectives import eval_loop
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.modeling import freezing
from spatialmix_jax.training import init_from
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.infra import errors
from spatialmix_jax.training import train_state

# Fields renamed since records were first written: a config.json that has the old name still
# restores.
_RENAMED_FIELDS = {'model.init': 'model.init_scheme'}
# WORKDIR/FROZEN_START: the fingerprint of the frozen collections a run started from.
FROZEN_START = 'frozen_start.json'


def model_variables(state):
  return {**state.weights, 'batch_stats': state.batch_stats}


def evaluate_state(experiment, state, eval_data, p_eval_step):
  """Means of the test metrics over every example of the split (`count` of them)."""
  return eval_loop.run(p_eval_step, model_variables(state), eval_data, experiment.mesh)


def _read_frozen_start(workdir):
  path = epath.Path(workdir) / FROZEN_START if workdir else None
  if path is None or not path.exists():
    return None
  return json.loads(path.read_text())['frozen']


def _frozen_unchanged(experiment, weights, workdir):
  """Whether the frozen collections still hold, bitwise, what the run started from: the
  fingerprint the run recorded at step 0 (`FROZEN_START`). Runs recorded before it existed are
  compared with their start recomputed the way training computes it (its random init, or
  `config.init_from`'s weights); None when that source can no longer be read."""
  recorded = _read_frozen_start(workdir)
  if recorded is not None:
    now = freezing.fingerprint(weights, experiment.frozen)
    return all(recorded.get(c) == now[c] for c in experiment.frozen)
  tx, _ = train_state.create_optimizer(experiment, total_steps=1, steps_per_epoch=1)
  initial = init_from.initial_variables(experiment, train_state.initial_state(experiment, tx))
  return None if initial is None else freezing.unchanged(initial, weights, experiment.frozen)


def summary(experiment, state, results, step, wall_time_s, workdir=None):
  """The record written to results.json / eval.json."""
  config = experiment.config
  record = {
      'step': int(step),
      'mode': config.mode,
      'frozen_collections': list(experiment.frozen),
      'model': config.model.name,
      'model_config': config.model.to_dict(),
      'task': config.task,
      'dataset': config.dataset,
      'seed': config.seed,
      'test_loss': results['loss'],
      'num_test_examples': results['count'],
      'params': freezing.parameter_report(state.weights, experiment.frozen),
      'frozen_unchanged': _frozen_unchanged(experiment, state.weights, workdir),
      'wall_time_s': round(wall_time_s, 2),
      'devices': jax.device_count(),
      'backend': jax.default_backend(),
  }
  record.update(experiment.task.result_fields(results))
  return record


def load_saved_config(workdir):
  """The config a run was trained with (WORKDIR/config.json) as a schema ConfigDict."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise checkpointing.NoCheckpointError(
        f'No config.json in {workdir!r}: train first with --job=train and the same --workdir.')
  with open(path) as f:
    saved = json.load(f)
  config = config_schema.get_config()

  def fill(target, values, prefix):
    for key, value in values.items():
      name = _RENAMED_FIELDS.get(f'{prefix}{key}', f'{prefix}{key}')
      key = name.rsplit('.', 1)[-1]
      if key not in target:
        logging.warning('Ignoring %s of %s: not a field of the config schema.', name, path)
      elif isinstance(value, dict):
        fill(target[key], value, f'{name}.')
      else:
        target[key] = value

  fill(config, saved, '')
  return config


def restore_for_eval(config, workdir, experiment):
  """The train state saved in `workdir` (config.eval_step, or the latest readable step)."""
  if os.path.exists(os.path.join(workdir, 'config.json')):
    experiment.task.check_checkpoint_config(config, load_saved_config(workdir), workdir)
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory) and '://' not in workdir:
    raise checkpointing.NoCheckpointError(
        f'No checkpoint in {workdir!r}: train first with --job=train and the same --workdir.')
  checkpoints = checkpointing.Checkpoints(workdir, create=False)
  # The opt_state shapes do not depend on the schedule's length, so any length restores.
  tx, _ = train_state.create_optimizer(experiment, total_steps=1, steps_per_epoch=1)
  target = train_state.abstract_state(experiment, tx).as_dict()
  requested = config.eval_step if config.eval_step >= 0 else None
  restored, step = checkpoints.restore_latest(target, step=requested)
  checkpoints.close()
  if restored is None:
    raise checkpointing.NoCheckpointError(
        f'No checkpoint in {workdir!r}: train first with --job=train and the same --workdir.')
  return train_state.TrainState(**restored), step


def restore_run(workdir, overrides=None):
  """(experiment, state, step) of `workdir`'s latest checkpoint under its own config.json, with
  `overrides` ({dotted field: value}: where the data lie, how to attack) applied."""
  config = load_saved_config(workdir)
  for dotted, value in (overrides or {}).items():
    *parents, leaf = dotted.split('.')
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  config.eval_step = -1
  experiment = experiment_lib.create_experiment(config)
  state, step = restore_for_eval(config, workdir, experiment)
  return experiment, state, step


def check_transferable(source, target, source_dir):
  """A one-line error unless the source model classifies the target's images."""
  mine = (target.config.dataset, target.image_shape, target.spec.num_classes)
  theirs = (source.config.dataset, source.image_shape, source.spec.num_classes)
  if mine != theirs:
    raise errors.ConfigError(f'eval.transfer_from {source_dir!r} is a model of {theirs[0]} '
                     f'{theirs[1]} ({theirs[2]} classes), this run one of {mine[0]} {mine[1]} '
                     f'({mine[2]} classes); give a source trained on the same data.')


def transfer_source(config, experiment):
  """(experiment, variables) of the model `config.eval.transfer_from` names, set to attack as
  this run's eval fields say (and to read its data where this run does)."""
  source_dir = config.eval.transfer_from
  overrides = {f'eval.{k}': v for k, v in config.eval.items() if k != 'transfer_from'}
  overrides['data_dir'] = config.data_dir
  source, state, _ = restore_run(source_dir, overrides)
  check_transferable(source, experiment, source_dir)
  return source, model_variables(state)


def evaluate(config, workdir):
  """Restores a checkpoint of `workdir`, evaluates it and writes `workdir/eval.json`.

  An exception other than the project's own errors gets a note naming the workdir and the
  checkpoint step, the last line of its traceback.
  """
  where = {'step': None}
  try:
    return _evaluate(config, workdir, where)
  except Exception as e:
    if not isinstance(e, errors.UserError):
      step = 'before a checkpoint was restored' if where['step'] is None else (
          f'checkpoint step {where["step"]}')
      e.add_note(f'[spatialmix_jax] while evaluating workdir {workdir!r}, {step}.')
    raise


def _evaluate(config, workdir, where):
  started = time.time()
  experiment = experiment_lib.create_experiment(config)
  eval_data = input_pipeline.create_eval_data(experiment, max_examples=config.eval.max_examples)
  state, step = restore_for_eval(config, workdir, experiment)
  where['step'] = step
  source = transfer_source(config, experiment) if config.eval.transfer_from else None
  results = evaluate_state(experiment, state, eval_data,
                           eval_loop.compile_eval_step(experiment))
  robustness = None
  if attacks.parse_attacks(config.eval.attacks):
    robustness = attacks.evaluate_attacks(experiment, model_variables(state), eval_data, source)
  record = summary(experiment, state, results, step, wall_time_s=time.time() - started,
                   workdir=workdir)
  if robustness is not None:
    record['robustness'] = robustness  # {attack: {ε in 1/255: accuracy}}
    if source is not None:
      record['transfer_from'] = config.eval.transfer_from
    if jax.process_index() == 0:
      attacks.plot_robustness(robustness, os.path.join(workdir, 'robustness.png'))
  if jax.process_index() == 0:
    (epath.Path(workdir) / 'eval.json').write_text(json.dumps(record, indent=2, sort_keys=True))
  logging.info('Evaluation of step %d: %s', step, json.dumps(record))
  return record
