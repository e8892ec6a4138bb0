"""Training: the sharded train step and the resumable loop behind `main.py --mode=train`."""

import functools
import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from absl import logging
from etils import epath
from clu import metric_writers
from clu import periodic_actions

from spatialmix_jax import attacks
from spatialmix_jax import checkpointing
from spatialmix_jax import evaluation
from spatialmix_jax import experiment as experiment_lib
from spatialmix_jax import freezing
from spatialmix_jax import init_from
from spatialmix_jax import input_pipeline
from spatialmix_jax import objectives
from spatialmix_jax import sharding
from spatialmix_jax import train_state
from spatialmix_jax import unshuffle

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the launcher resumes the same workdir


class Preempted(SystemExit):
  def __init__(self, step):
    super().__init__(PREEMPTED_EXIT_CODE)
    self.step = step


def train_step(state, batch, *, experiment, tx):
  """One optimizer step on a global batch; gradients only for trainable collections."""
  inputs, targets = experiment.model_inputs_and_targets(batch)
  frozen = {c: state.weights[c] for c in experiment.frozen}
  trainable = {c: w for c, w in state.weights.items() if c not in experiment.frozen}
  adversarial = experiment.config.adversarial_training
  if adversarial.enabled:
    # FGSM against the network exactly as this step evaluates it (train-mode BatchNorm on
    # this batch, current weights), so the update minimises the loss the attack maximised.
    variables = {**state.weights, 'batch_stats': state.batch_stats}
    loss_at = attacks.classification_loss(experiment, variables, targets, train=True)
    inputs = jax.lax.stop_gradient(attacks.fgsm(loss_at, inputs, adversarial.epsilon / 255.0))

  def micro_step(batch_stats, micro_batch):
    micro_inputs, micro_targets = micro_batch

    def loss_fn(trainable_weights):
      variables = {**trainable_weights, **frozen, 'batch_stats': batch_stats}
      outputs, model_state = experiment.model.apply(
          variables, micro_inputs, train=True, mutable=['batch_stats'])
      loss, metrics = experiment.per_example(outputs, micro_targets)
      return jnp.mean(loss), (model_state.get('batch_stats', batch_stats),
                              objectives.summed(loss, metrics))

    grads, (new_stats, metrics) = jax.grad(loss_fn, has_aux=True)(trainable)
    return grads, new_stats, metrics

  grads, batch_stats, metrics = accumulate_gradients(
      micro_step, state.batch_stats, (inputs, targets), experiment.config.grad_accum_steps,
      experiment.mesh)
  # Frozen collections go to optax.set_to_zero, which never reads these zeros.
  grads.update({c: jax.tree.map(jnp.zeros_like, w) for c, w in frozen.items()})
  updates, opt_state = tx.update(grads, state.opt_state, state.weights)
  state = state.replace(step=state.step + 1, weights=optax.apply_updates(state.weights, updates),
                        batch_stats=batch_stats, opt_state=opt_state)
  return state, metrics


def accumulate_gradients(micro_step, batch_stats, batch, num_micro, mesh):
  """Mean gradient of `batch` taken as `num_micro` equal micro-batches, one after another.

  `micro_step(batch_stats, micro_batch) -> (grads, batch_stats, metric sums)`. The micro-batches
  run in a `lax.scan`, so only one micro-batch's activations are alive at a time; the mean of
  their mean-loss gradients is the full batch's gradient, and one optimizer update follows,
  so the step count, LR schedule and freezing are those of an unsplit step. BatchNorm is the
  exception: each micro-batch is normalised by its own statistics (as per-GPU BatchNorm in
  PyTorch DDP is), and the running averages are updated once per micro-batch.
  """
  if num_micro == 1:
    return micro_step(batch_stats, batch)
  num_devices = mesh.devices.size

  def split(x):
    # Micro-batch j takes the j-th slice of every device's shard, so splitting moves no data
    # between devices and each micro-batch stays spread over the whole mesh.
    per_device = x.shape[0] // num_devices
    x = x.reshape((num_devices, num_micro, per_device // num_micro) + x.shape[1:])
    x = jnp.swapaxes(x, 0, 1).reshape((num_micro, x.shape[0] * x.shape[2]) + x.shape[3:])
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS)))

  def body(carry, micro_batch):
    grad_sum, stats = carry
    grads, stats, metrics = micro_step(stats, micro_batch)
    return (jax.tree.map(jnp.add, grad_sum, grads), stats), metrics

  micro_batches = jax.tree.map(split, batch)
  first = jax.tree.map(lambda x: x[0], micro_batches)
  grad_shapes = jax.eval_shape(lambda: micro_step(batch_stats, first)[0])
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), grad_shapes)
  (grad_sum, batch_stats), metrics = jax.lax.scan(body, (zeros, batch_stats), micro_batches)
  grads = jax.tree.map(lambda g: g / num_micro, grad_sum)
  return grads, batch_stats, jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)


def compile_train_step(experiment, tx):
  repl = sharding.replicated(experiment.mesh)
  return jax.jit(functools.partial(train_step, experiment=experiment, tx=tx),
                 in_shardings=(repl, sharding.batch_sharded(experiment.mesh)),
                 out_shardings=(repl, repl), donate_argnums=0)


class _PreemptionWatch:
  """SIGTERM (a spot/preemption notice) asks the loop to save and stop at a step boundary."""

  def __init__(self):
    self._requested = threading.Event()
    self._previous = None
    self._installed = False

  def __enter__(self):
    # Several processes agree on the step through JAX's preemption sync instead.
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._requested.set())
      self._installed = True
    return self

  def __exit__(self, *exc):
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)

  def reached(self, step):
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested.is_set()


def _write_json(workdir, name, payload):
  if jax.process_index() == 0:
    # epath: the workdir may be a gs:// bucket (Cloud TPU); tmp + replace keeps a local file whole.
    path = epath.Path(workdir) / name
    tmp = path.with_name(name + '.tmp')
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tmp.replace(path)


def _check_finite(metrics_sums, step, last_saved):
  if not np.isfinite(float(metrics_sums['loss'])):
    raise FloatingPointError(
        f'Loss is not finite at step {step}; stopping. The last checkpoint is step '
        f'{last_saved}: lower optimizer.learning_rate or enable grad_clip_norm and resume.')


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns results."""
  started = time.time()
  experiment = experiment_lib.create_experiment(config)
  experiment_lib.check_workdir_writable(workdir)
  train_data = input_pipeline.create_train_data(config, experiment.builder, experiment.spec)
  eval_data = input_pipeline.create_eval_data(config, experiment.builder, experiment.spec)
  steps_per_epoch = train_data.steps_per_epoch
  total_steps = train_state.total_train_steps(config, steps_per_epoch)
  tx, schedule = train_state.create_optimizer(experiment, total_steps, steps_per_epoch)

  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  checkpoints = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  target = train_state.abstract_state(experiment, tx)
  restored, start_step = checkpoints.restore_latest(target.as_dict())
  if restored is None:
    repl = sharding.replicated(experiment.mesh)
    state = jax.jit(functools.partial(train_state.init_state, experiment, tx), out_shardings=repl)()
    state = init_from.initialise(state, experiment, tx)  # a no-op unless config.init_from
    start_step = 0
  else:
    state = train_state.TrainState(**restored)
    logging.info('Resumed from checkpoint step %d in %s.', start_step, checkpoints.directory)
  _write_json(workdir, 'config.json', json.loads(config.to_json_best_effort()))

  report = freezing.parameter_report(state.weights, experiment.frozen)
  logging.info('Parameters (frozen: %s):\n%s\n%s', ', '.join(experiment.frozen) or 'none',
               freezing.parameter_overview(state.weights), json.dumps(report))
  logging.info('%d train steps (%d per epoch), global batch %d on %d devices.',
               total_steps, steps_per_epoch, config.batch_size, jax.device_count())

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams({k: v for k, v in _flat(config.to_dict()).items()})
  p_train_step = compile_train_step(experiment, tx)
  p_eval_step = evaluation.compile_eval_step(experiment)
  progress = periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.log_every_steps,
      every_secs=None)

  batches = train_data.iterate(start_step)
  pending = []
  last_saved = start_step
  with _PreemptionWatch() as preemption:
    for step in range(start_step + 1, total_steps + 1):
      batch = sharding.global_batch(next(batches), experiment.mesh)
      state, metrics = p_train_step(state, batch)
      pending.append(metrics)
      progress(step, time.time())
      last_step = step == total_steps
      if step % config.log_every_steps == 0 or last_step:
        sums = jax.tree.map(lambda *xs: np.sum(xs), *jax.device_get(pending))
        pending = []
        _check_finite(sums, step, last_saved)
        means = objectives.averaged(sums)
        scalars = {f'train_{k}': v for k, v in means.items() if k != 'count'}
        scalars['learning_rate'] = float(schedule(step - 1))
        writer.write_scalars(step, scalars)
      preempted = preemption.reached(step)
      if step % config.checkpoint_every_steps == 0 or last_step or preempted:
        if pending:
          _check_finite(jax.tree.map(lambda *xs: np.sum(xs), *jax.device_get(pending)),
                        step, last_saved)
        checkpoints.save(step, state.as_dict())
        last_saved = step
        if preempted and not last_step:
          checkpoints.close()
          logging.warning('Preempted: saved step %d; resume with the same --workdir.', step)
          raise Preempted(step)
      if config.eval_every_steps and step % config.eval_every_steps == 0 and not last_step:
        results = evaluation.evaluate_state(experiment, state, eval_data, p_eval_step)
        writer.write_scalars(step, {f'test_{k}': v for k, v in results.items()
                                    if k != 'count'})

  results = evaluation.evaluate_state(experiment, state, eval_data, p_eval_step)
  writer.write_scalars(total_steps, {f'test_{k}': v for k, v in results.items()
                                     if k != 'count'})
  writer.flush()
  checkpoints.close()
  summary = evaluation.summary(experiment, state, results, total_steps,
                               wall_time_s=time.time() - started)
  if config.task == 'unshuffle' and jax.process_index() == 0:
    unshuffle.save_figure(experiment, evaluation.model_variables(state), eval_data,
                          os.path.join(workdir, 'unshuffle.png'))
  _write_json(workdir, 'results.json', summary)
  logging.info('Results: %s', json.dumps(summary))
  return summary


def _flat(tree, prefix=''):
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    elif value is not None:
      flat[f'{prefix}{key}'] = value
  return flat
