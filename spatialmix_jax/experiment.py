"""Everything a config determines before any compute: checked, built and shared by the trainer,
the evaluator and the experiment modules (attacks, spectral analysis, un-shuffling)."""

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spatialmix_jax import attacks
from spatialmix_jax import augment
from spatialmix_jax import datasets
from spatialmix_jax import freezing
from spatialmix_jax import init_from
from spatialmix_jax import models
from spatialmix_jax import objectives
from spatialmix_jax import sharding
from spatialmix_jax import unshuffle

DTYPES = ('float32', 'bfloat16')


def _require(condition, message):
  if not condition:
    raise ValueError(message)


def validate_config(config):
  """One-line errors for a config that cannot run, before any data or model is touched."""
  _require(config.task in objectives.TASKS,
           f'Unknown task {config.task!r}; choose one of {objectives.TASKS}.')
  _require(config.mode in freezing.MODES,
           f'Unknown mode {config.mode!r}; choose one of {freezing.MODES}.')
  _require(config.dtype in DTYPES, f'Unknown dtype {config.dtype!r}; choose one of {DTYPES}.')
  datasets.get_spec(config.dataset)
  models.validate(config.model)
  is_unshuffle_model = config.model.name == 'unshuffle_convmixer'
  _require(is_unshuffle_model == (config.task == 'unshuffle'),
           f'task {config.task!r} does not go with model {config.model.name!r}: the unshuffle '
           'task needs model.name=unshuffle_convmixer and classification any other model.')
  _require(config.batch_size > 0 and config.eval_batch_size > 0,
           'batch_size and eval_batch_size must be positive.')
  _require(config.num_train_steps > 0 or config.num_epochs > 0,
           'Set num_train_steps > 0 or num_epochs > 0.')
  _require(isinstance(config.grad_accum_steps, int) and config.grad_accum_steps >= 1,
           f'grad_accum_steps must be an integer >= 1, got {config.grad_accum_steps!r}.')
  per_device, uneven = divmod(config.batch_size, jax.device_count())
  _require(uneven or per_device % config.grad_accum_steps == 0,
           f'grad_accum_steps {config.grad_accum_steps} does not divide the per-device batch '
           f'{per_device} (batch_size {config.batch_size} over {jax.device_count()} devices); '
           'pick a divisor of it.')
  augment.validate(config.augment, config.task)
  _require(config.checkpoint_every_steps > 0, 'checkpoint_every_steps must be > 0.')
  _require(config.log_every_steps > 0, 'log_every_steps must be > 0.')
  attacks.validate_config(config)


@dataclasses.dataclass
class Experiment:
  config: Any
  spec: datasets.DatasetSpec
  builder: Any
  model: Any
  mesh: Any
  image_shape: tuple
  collections: tuple  # weight collections of the model (batch_stats excluded)
  frozen: tuple
  permutation: Any = None  # unshuffle task only

  def init_variables(self):
    dummy = jnp.zeros((1,) + self.image_shape, jnp.float32)
    return self.model.init({'params': jax.random.PRNGKey(self.config.seed)}, dummy,
                           train=False)

  def model_inputs_and_targets(self, batch):
    return objectives.inputs_and_targets(self.config.task, batch, self.permutation)

  def per_example(self, outputs, targets, training=True):
    # Label smoothing shapes the training objective only; test loss is plain cross-entropy.
    return objectives.per_example(
        self.config.task, outputs, targets, num_classes=self.spec.num_classes,
        label_smoothing=self.config.augment.label_smoothing if training else 0.0)


def _image_shape(config, spec):
  if spec.image_shape[0] is None:
    _require(config.augment.image_size > 0,
             f'{config.dataset} has images of varying size: set augment.image_size.')
    return (config.augment.image_size, config.augment.image_size, spec.image_shape[-1])
  return tuple(spec.image_shape)


def create_experiment(config):
  validate_config(config)
  spec = datasets.get_spec(config.dataset)
  image_shape = _image_shape(config, spec)
  model = models.create_model(
      config.model, num_classes=spec.num_classes, num_channels=image_shape[-1],
      mean=spec.mean, std=spec.std, dtype=jnp.dtype(config.dtype))
  builder = datasets.get_builder(config.dataset, config.data_dir)
  permutation = None
  if config.task == 'unshuffle':
    permutation = unshuffle.pixel_permutation(
        config.unshuffle.permutation_seed, image_shape[0], image_shape[1])
  experiment = Experiment(config, spec, builder, model, sharding.create_mesh(), image_shape,
                          (), (), permutation)
  shapes = jax.eval_shape(experiment.init_variables)
  experiment.collections = tuple(sorted(c for c in shapes if c != 'batch_stats'))
  experiment.frozen = freezing.frozen_collections(
      config.mode, experiment.collections, config.frozen_collections)
  return experiment


def check_workdir_writable(workdir):
  """A one-line error for a workdir we cannot write, before anything is computed."""
  if '://' in workdir:  # object stores (gs://) are checked by the first write
    return
  parent = workdir
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  target = workdir if os.path.exists(workdir) else parent or '.'
  if not os.path.isdir(target) or not os.access(target, os.W_OK | os.X_OK):
    raise PermissionError(f'Workdir {workdir!r} is not writable ({target!r}); pass a '
                          'folder you can write to with --workdir.')


def frozen_unchanged(experiment, weights):
  """Whether every frozen collection still equals its value at initialisation (from
  `config.init_from` when set), bitwise; None when that source is gone."""
  initial = init_from.initial_variables(experiment)
  if initial is None:
    return None
  initial = jax.device_get(initial)
  final = jax.device_get(weights)
  return all(
      np.array_equal(a, b)
      for c in experiment.frozen
      for a, b in zip(jax.tree.leaves(initial[c]), jax.tree.leaves(final[c])))
