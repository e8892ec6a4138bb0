"""Exact evaluation (every test example once, padding masked out) and `main.py --mode=eval`."""

import functools
import json
import os
import time

import jax
import numpy as np
from absl import logging
from etils import epath

from spatialmix_jax import attacks
from spatialmix_jax import checkpointing
from spatialmix_jax import config_schema
from spatialmix_jax import experiment as experiment_lib
from spatialmix_jax import freezing
from spatialmix_jax import input_pipeline
from spatialmix_jax import objectives
from spatialmix_jax import sharding
from spatialmix_jax import train_state
from spatialmix_jax import unshuffle


def eval_step(variables, batch, *, experiment):
  inputs, targets = experiment.model_inputs_and_targets(batch)
  outputs = experiment.model.apply(variables, inputs, train=False)
  loss, metrics = experiment.per_example(outputs, targets, training=False)
  if experiment.config.task == 'unshuffle':
    # The do-nothing baseline, so results show the gain over the scrambled input.
    metrics['scrambled_psnr'] = unshuffle.scrambled_psnr(targets, experiment.permutation)
  return objectives.summed(loss, metrics, batch['mask'])


def compile_eval_step(experiment):
  repl = sharding.replicated(experiment.mesh)
  return jax.jit(functools.partial(eval_step, experiment=experiment),
                 in_shardings=(repl, sharding.batch_sharded(experiment.mesh)),
                 out_shardings=repl)


def model_variables(state):
  return {**state.weights, 'batch_stats': state.batch_stats}


def evaluate_state(experiment, state, eval_data, p_eval_step):
  """Means of the test metrics over every example of the split (`count` of them)."""
  variables = model_variables(state)
  totals = None
  for local_batch in eval_data.iterate():
    sums = p_eval_step(variables, sharding.global_batch(local_batch, experiment.mesh))
    totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
  return objectives.averaged(jax.device_get(totals))


def summary(experiment, state, results, step, wall_time_s):
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
      'frozen_unchanged': experiment_lib.frozen_unchanged(experiment, state.weights),
      'wall_time_s': round(wall_time_s, 2),
      'devices': jax.device_count(),
      'backend': jax.default_backend(),
  }
  if config.task == 'classification':
    record['test_accuracy'] = results['accuracy']
  else:
    record['test_psnr'] = results['psnr']
    record['scrambled_psnr'] = results['scrambled_psnr']
  return record


def load_saved_config(workdir):
  """The config a run was trained with (WORKDIR/config.json) as a schema ConfigDict."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise checkpointing.NoCheckpointError(
        f'No config.json in {workdir!r}: train first with --mode=train and the same --workdir.')
  with open(path) as f:
    saved = json.load(f)
  config = config_schema.get_config()

  def fill(target, values, prefix):
    for key, value in values.items():
      if key not in target:
        logging.warning('Ignoring %s%s of %s: not a field of the config schema.', prefix, key, path)
      elif isinstance(value, dict):
        fill(target[key], value, f'{prefix}{key}.')
      else:
        target[key] = value

  fill(config, saved, '')
  return config


def check_saved_permutation(config, workdir):
  """An un-shuffling model only undoes the permutation it was trained on."""
  path = os.path.join(workdir, 'config.json')
  if config.task != 'unshuffle' or not os.path.exists(path):
    return
  saved = load_saved_config(workdir).unshuffle.permutation_seed
  if saved != config.unshuffle.permutation_seed:
    raise ValueError(
        f'unshuffle.permutation_seed {config.unshuffle.permutation_seed} differs from the seed '
        f'{saved} the checkpoint in {workdir!r} was trained with; pass '
        f'--config.unshuffle.permutation_seed={saved}.')


def restore_for_eval(config, workdir, experiment):
  """The train state saved in `workdir` (config.eval_step, or the latest readable step)."""
  check_saved_permutation(config, workdir)
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory) and '://' not in workdir:
    raise checkpointing.NoCheckpointError(
        f'No checkpoint in {workdir!r}: train first with --mode=train and the same --workdir.')
  checkpoints = checkpointing.Checkpoints(workdir, create=False)
  # The opt_state shapes do not depend on the schedule's length, so any length restores.
  tx, _ = train_state.create_optimizer(experiment, total_steps=1, steps_per_epoch=1)
  target = train_state.abstract_state(experiment, tx).as_dict()
  requested = config.eval_step if config.eval_step >= 0 else None
  restored, step = checkpoints.restore_latest(target, step=requested)
  checkpoints.close()
  if restored is None:
    raise checkpointing.NoCheckpointError(
        f'No checkpoint in {workdir!r}: train first with --mode=train and the same --workdir.')
  return train_state.TrainState(**restored), step


def evaluate(config, workdir):
  """Restores a checkpoint of `workdir`, evaluates it and writes `workdir/eval.json`."""
  started = time.time()
  experiment = experiment_lib.create_experiment(config)
  eval_data = input_pipeline.create_eval_data(config, experiment.builder, experiment.spec,
                                              max_examples=config.eval.max_examples)
  state, step = restore_for_eval(config, workdir, experiment)
  results = evaluate_state(experiment, state, eval_data, compile_eval_step(experiment))
  robustness = None
  if attacks.parse_attacks(config.eval.attacks):
    robustness = attacks.evaluate_attacks(experiment, model_variables(state), eval_data)
  record = summary(experiment, state, results, step, wall_time_s=time.time() - started)
  if robustness is not None:
    record['robustness'] = robustness  # {attack: {ε in 1/255: accuracy}}
    if jax.process_index() == 0:
      attacks.plot_robustness(robustness, os.path.join(workdir, 'robustness.png'))
  if jax.process_index() == 0:
    (epath.Path(workdir) / 'eval.json').write_text(json.dumps(record, indent=2, sort_keys=True))
  logging.info('Evaluation of step %d: %s', step, json.dumps(record))
  return record
