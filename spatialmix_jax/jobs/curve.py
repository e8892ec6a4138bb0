"""Evaluations along a training run (`config.eval_every_steps`): WORKDIR/curve.json holds one
point per evaluation, so one long run gives accuracy (and, with
`config.eval.attacks_along_training`, attacked accuracy) against training length.

These are checkpoints of one schedule evaluated on the way, not models trained to each budget
with a schedule of that length: a report must label them so. A resumed run keeps the points up
to the step it restored and recomputes the later ones, which are then bitwise those of an
uninterrupted run (the restored state and the data order are).
"""

import json

import jax
from etils import epath

from spatialmix_jax.data import input_pipeline
from spatialmix_jax.objectives import attacks

FILENAME = 'curve.json'


def read(workdir):
  path = epath.Path(workdir) / FILENAME
  return json.loads(path.read_text()) if path.exists() else None


class Curve:
  """Collects the evaluations of one run and rewrites curve.json after each."""

  def __init__(self, experiment, workdir, start_step, steps_per_epoch):
    self._experiment = experiment
    self._workdir = workdir
    self._steps_per_epoch = steps_per_epoch
    earlier = read(workdir) or {}
    self._points = [p for p in earlier.get('points', []) if p['step'] <= start_step]
    config = experiment.config
    self._attacked = bool(config.eval.attacks_along_training
                          and attacks.parse_attacks(config.eval.attacks))
    self._attack_data = None

  def add(self, step, results, variables):
    """Records the clean `results` (eval_loop means) of `step`, attacked when asked."""
    point = {'step': int(step), 'epoch': step / self._steps_per_epoch,
             'test_loss': results['loss']}
    point.update(self._experiment.task.result_fields(results))
    if self._attacked:
      if self._attack_data is None:
        self._attack_data = input_pipeline.create_eval_data(
            self._experiment, max_examples=self._experiment.config.eval.max_examples)
      point['robustness'] = attacks.evaluate_attacks(self._experiment, variables,
                                                     self._attack_data)
    self._points = [p for p in self._points if p['step'] != step] + [point]
    self._write()

  def _write(self):
    if jax.process_index() != 0:
      return
    eval_config = self._experiment.config.eval
    payload = {
        'about': 'evaluations along one training run (not models trained to each budget)',
        'points': sorted(self._points, key=lambda p: p['step']),
        'attacks': eval_config.attacks if self._attacked else '',
        'epsilons': eval_config.epsilons if self._attacked else '',
        'num_attacked_examples': (
            self._attack_data.num_local_examples * jax.process_count()
            if self._attack_data else None),
    }
    path = epath.Path(self._workdir) / FILENAME
    tmp = path.with_name(FILENAME + '.tmp')
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tmp.replace(path)
