"""Training: the resumable loop behind `main.py --job=train` around the sharded train step
(`train_step.py`): input, checkpoints, metrics, preemption, the final evaluation and record."""

import dataclasses
import json
import signal
import threading
import time

import jax
import numpy as np
from absl import logging
from etils import epath
from clu import metric_writers

from spatialmix_jax.training import checkpointing
from spatialmix_jax.jobs import curve as curve_lib
from spatialmix_jax.objectives import eval_loop
from spatialmix_jax.jobs import evaluation
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.modeling import freezing
from spatialmix_jax.training import init_from
from spatialmix_jax.data import input_pipeline
from spatialmix_jax.infra import errors
from spatialmix_jax.training import progress
from spatialmix_jax.infra import sharding
from spatialmix_jax.objectives import tasks
from spatialmix_jax.training import train_state
from spatialmix_jax.training import train_step

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the launcher resumes the same workdir


class Preempted(SystemExit):
  def __init__(self, step):
    super().__init__(PREEMPTED_EXIT_CODE)
    self.step = step


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
    raise errors.DivergedError(
        f'Loss is not finite at step {step}; stopping. The last checkpoint is step '
        f'{last_saved}: lower optimizer.learning_rate or enable grad_clip_norm and resume.')


@dataclasses.dataclass
class _Position:
  """How far a run got, for the last line of a traceback."""
  phase: str = 'setting up'
  step: int = 0
  saved: int = None  # the newest checkpoint's step

  def describe(self, workdir):
    saved = 'none' if self.saved is None else f'step {self.saved}'
    at = f' at step {self.step}' if self.phase == 'training' else ''
    return (f'[spatialmix_jax] while {self.phase}{at} in workdir {workdir!r}; last checkpoint: '
            f'{saved}.')


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns results.

  The project's own errors (`errors.UserError`) say what to do in one line; any other
  exception gets a note naming the workdir and the step it happened at, printed as the last
  line of its traceback.
  """
  position = _Position()
  try:
    return _train_and_evaluate(config, workdir, position)
  except Exception as e:
    if not isinstance(e, errors.UserError):
      e.add_note(position.describe(workdir))
    raise


def _train_and_evaluate(config, workdir, position):
  started = time.time()
  experiment = experiment_lib.create_experiment(config)
  experiment_lib.check_workdir_writable(workdir)
  train_data = input_pipeline.create_train_data(experiment)
  eval_data = input_pipeline.create_eval_data(experiment)
  steps_per_epoch = train_data.steps_per_epoch
  total_steps = train_state.total_train_steps(config, steps_per_epoch)
  tx, schedule = train_state.create_optimizer(experiment, total_steps, steps_per_epoch)

  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  checkpoints = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  target = train_state.abstract_state(experiment, tx)
  restored, start_step = checkpoints.restore_latest(target.as_dict())
  if restored is None:
    state = train_state.initial_state(experiment, tx)
    state = init_from.initialise(state, experiment, tx)  # a no-op unless config.init_from
    start_step = 0
    # What the frozen collections start from, as bits: the end-of-run check compares with it.
    _write_json(workdir, evaluation.FROZEN_START, {
        'frozen': freezing.fingerprint(state.weights, experiment.frozen)})
  else:
    state = train_state.TrainState(**restored)
    position.saved = start_step
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
  p_eval_step = eval_loop.compile_eval_step(experiment)

  curve = (curve_lib.Curve(experiment, workdir, start_step, steps_per_epoch)
           if config.eval_every_steps else None)
  clock = progress.LoopClock(start_step, total_steps, config.batch_size)
  batches = train_data.iterate(start_step)
  ready = None
  position.phase, position.step = 'training', start_step + 1
  if start_step < total_steps:
    ready = sharding.global_batch(next(batches), experiment.mesh)
    clock.charge('input')
    p_train_step = train_step.compile_train_step(experiment, tx).lower(state, ready).compile()
    clock.charge_compile()
    logging.info('Compiled the train step in %.1f s.', clock.compile_seconds)
  pending = []
  last_saved = start_step
  with _PreemptionWatch() as preemption:
    for step in range(start_step + 1, total_steps + 1):
      position.step = step
      batch = ready if ready is not None else sharding.global_batch(next(batches),
                                                                   experiment.mesh)
      ready = None
      clock.charge('input')
      state, metrics = p_train_step(state, batch)
      pending.append(metrics)
      clock.charge('compute')
      last_step = step == total_steps
      if step % config.log_every_steps == 0 or last_step:
        jax.block_until_ready(metrics)  # a step counts as done only when it is
        clock.charge('compute')
        rates = clock.report(step)
        sums = jax.tree.map(lambda *xs: np.sum(xs), *jax.device_get(pending))
        pending = []
        _check_finite(sums, step, last_saved)
        means = tasks.averaged(sums)
        scalars = {f'train_{k}': v for k, v in means.items() if k != 'count'}
        scalars['learning_rate'] = float(schedule(step - 1))
        writer.write_scalars(step, {**scalars, **rates})
        logging.info('Step %d/%d: %.2f steps/s (%.0f img/s), ETA %.1f min; time on input '
                     '%.0f%%, compute %.0f%%, host %.0f%%.', step, total_steps,
                     rates['steps_per_sec'], rates['images_per_sec'], rates['eta_minutes'],
                     *(100 * rates[f'{part}_fraction'] for part in progress.PARTS))
      preempted = preemption.reached(step)
      if step % config.checkpoint_every_steps == 0 or last_step or preempted:
        if pending:
          _check_finite(jax.tree.map(lambda *xs: np.sum(xs), *jax.device_get(pending)),
                        step, last_saved)
        checkpoints.save(step, state.as_dict())
        last_saved = position.saved = step
        if preempted and not last_step:
          checkpoints.close()
          logging.warning('Preempted: saved step %d; resume with the same --workdir.', step)
          raise Preempted(step)
      if config.eval_every_steps and step % config.eval_every_steps == 0 and not last_step:
        results = evaluation.evaluate_state(experiment, state, eval_data, p_eval_step)
        writer.write_scalars(step, {f'test_{k}': v for k, v in results.items()
                                    if k != 'count'})
        curve.add(step, results, evaluation.model_variables(state))
      clock.charge('host')

  position.phase = f'evaluating step {total_steps}'
  results = evaluation.evaluate_state(experiment, state, eval_data, p_eval_step)
  writer.write_scalars(total_steps, {f'test_{k}': v for k, v in results.items()
                                     if k != 'count'})
  if curve is not None:
    curve.add(total_steps, results, evaluation.model_variables(state))
  writer.flush()
  checkpoints.close()
  summary = evaluation.summary(experiment, state, results, total_steps,
                               wall_time_s=time.time() - started, workdir=workdir)
  timing = clock.summary(total_steps)
  if timing is not None:
    summary['train_timing'] = timing  # steady-state img/s and the loop's time split
  if jax.process_index() == 0:
    experiment.task.save_figure(experiment.model, evaluation.model_variables(state), eval_data,
                                workdir)
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
