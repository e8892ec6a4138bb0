"""Everything a config determines before any compute, checked once and built once: the dataset's
spec, the task, the model, the device mesh, the model's weight collections and which of them
are frozen. The trainer, the evaluator and the experiment modules (attacks, spectral analysis)
share one immutable `Experiment`; each builds its own data (`input_pipeline.py`).

No TensorFlow here: the train step and the accelerator benchmark use this module on machines
that have none.
"""

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp

from spatialmix_jax import attacks
from spatialmix_jax import augment
from spatialmix_jax import config_schema
from spatialmix_jax import datasets
from spatialmix_jax import depthwise
from spatialmix_jax import freezing
from spatialmix_jax import models
from spatialmix_jax import optimizers
from spatialmix_jax import sharding
from spatialmix_jax import tasks

DTYPES = ('float32', 'bfloat16')


def _require(condition, message):
  if not condition:
    raise ValueError(message)


def image_shape(config, spec):
  """(H, W, C) of the model's input: the dataset's, or augment.image_size for ImageNet."""
  if spec.image_shape[0] is None:
    _require(config.augment.image_size > 0,
             f'{config.dataset} has images of varying size: set augment.image_size.')
    return (config.augment.image_size, config.augment.image_size, spec.image_shape[-1])
  return tuple(spec.image_shape)


def validate_config(config):
  """One-line errors for a config that cannot run, before any data, model or device is
  touched (the device checks follow in `create_experiment`)."""
  config_schema.check_values(config)
  task_class = tasks.get_class(config.task)
  _require(config.mode in freezing.MODES,
           f'Unknown mode {config.mode!r}; choose one of {freezing.MODES}.')
  _require(config.dtype in DTYPES, f'Unknown dtype {config.dtype!r}; choose one of {DTYPES}.')
  spec = datasets.get_spec(config.dataset)
  models.validate(config.model)
  output = models.get_entry(config.model.name).output
  _require(output == task_class.model_output,
           f'task {config.task!r} needs a model that returns {task_class.model_output}, but '
           f'{config.model.name!r} returns {output}: choose one of '
           f'{[n for n, e in models.MODELS.items() if e.output == task_class.model_output]}.')
  freezing.frozen_collections(config.mode, models.get_entry(config.model.name).collections,
                              config.frozen_collections)
  optimizers.validate(config.optimizer)
  augment.validate(config.augment, task_class)
  attacks.validate_config(config, task_class)
  models.check_input_size(config.model, image_shape(config, spec), config.dataset)


def _check_devices(config):
  per_device, uneven = divmod(config.batch_size, jax.device_count())
  _require(uneven or per_device % config.grad_accum_steps == 0,
           f'grad_accum_steps {config.grad_accum_steps} does not divide the per-device batch '
           f'{per_device} (batch_size {config.batch_size} over {jax.device_count()} devices); '
           'pick a divisor of it.')


@dataclasses.dataclass(frozen=True, eq=False)
class Experiment:
  config: Any  # the run's ConfigDict; never modified after creation
  spec: datasets.DatasetSpec
  image_shape: tuple
  task: Any  # a tasks.py object
  model: Any  # a Linen module
  mesh: Any
  collections: tuple  # weight collections of the model (batch_stats excluded)
  frozen: tuple

  def init_variables(self):
    dummy = jnp.zeros((1,) + self.image_shape, jnp.float32)
    return self.model.init({'params': jax.random.PRNGKey(self.config.seed)}, dummy,
                           train=False)


def create_experiment(config):
  """The validated `Experiment` of `config`; builds the native depthwise kernel if it will be
  used, so that an unwritable cache is an error before any compute."""
  validate_config(config)
  _check_devices(config)
  spec = datasets.get_spec(config.dataset)
  shape = image_shape(config, spec)
  task = tasks.create_task(config, spec.num_classes, shape)
  model = models.create_model(
      config.model, num_classes=spec.num_classes, num_channels=shape[-1],
      mean=spec.mean, std=spec.std, dtype=jnp.dtype(config.dtype))
  depthwise.prepare(config.model.depthwise_impl)
  dummy = jnp.zeros((1,) + shape, jnp.float32)
  variable_shapes = jax.eval_shape(
      lambda: model.init({'params': jax.random.PRNGKey(0)}, dummy, train=False))
  collections = tuple(sorted(c for c in variable_shapes if c != 'batch_stats'))
  declared = models.get_entry(config.model.name).collections
  if collections != declared:
    raise RuntimeError(f'{config.model.name} has collections {collections}, but models.py '
                       f'declares {declared}: correct its registry entry.')
  frozen = freezing.frozen_collections(config.mode, collections, config.frozen_collections)
  return Experiment(config, spec, shape, task, model, sharding.create_mesh(), collections,
                    frozen)


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

