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
import ml_collections

from spatialmix_jax.objectives import attacks
from spatialmix_jax.data import augment
from spatialmix_jax.config import config_schema
from spatialmix_jax.data import datasets
from spatialmix_jax.infra import errors
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.modeling import freezing
from spatialmix_jax.modeling import models
from spatialmix_jax.training import optimizers
from spatialmix_jax.infra import sharding
from spatialmix_jax.objectives import tasks

DTYPES = ('float32', 'bfloat16')


def _require(condition, message):
  if not condition:
    raise errors.ConfigError(message)


def image_shape(config, spec):
  """(H, W, C) of the model's input: the dataset's, or augment.image_size for ImageNet."""
  if spec.image_shape[0] is None:
    _require(config.augment.image_size > 0,
             f'{config.dataset} has images of varying size: set augment.image_size.')
    return (config.augment.image_size, config.augment.image_size, spec.image_shape[-1])
  return tuple(spec.image_shape)


@dataclasses.dataclass
class Resolved:
  """What the checks have looked up so far, handed down the pass so nothing is looked up or
  checked twice (create_experiment builds from it)."""
  task_class: Any = None
  spec: Any = None
  entry: Any = None  # the model registry's Entry
  image_shape: tuple = ()


def _check_task(config, resolved):
  resolved.task_class = tasks.get_class(config.task)


def _check_mode_and_dtype(config, resolved):
  del resolved
  _require(config.mode in freezing.MODES,
           f'Unknown mode {config.mode!r}; choose one of {freezing.MODES}.')
  _require(config.dtype in DTYPES, f'Unknown dtype {config.dtype!r}; choose one of {DTYPES}.')


def _check_dataset(config, resolved):
  resolved.spec = datasets.get_spec(config.dataset)
  resolved.image_shape = image_shape(config, resolved.spec)


def _check_model(config, resolved):
  models.validate(config.model)
  resolved.entry = models.get_entry(config.model.name)
  wanted = resolved.task_class.model_output
  _require(resolved.entry.output == wanted,
           f'task {config.task!r} needs a model that returns {wanted}, but '
           f'{config.model.name!r} returns {resolved.entry.output}: choose one of '
           f'{[n for n, e in models.MODELS.items() if e.output == wanted]}.')
  models.check_input_size(config.model, resolved.image_shape, config.dataset)


def _check_frozen(config, resolved):
  freezing.frozen_collections(config.mode, resolved.entry.collections, config.frozen_collections)


def _check_ignored_model_fields(config, resolved):
  del resolved
  models.check_ignored_fields(config.model, config_schema.get_config().model)


# Every check of a config, each kept beside its concept and called here once, in one pass down
# the folders: the schema's ranges (config), the task (objectives), the dataset (data), the
# model and what it freezes (modeling), the optimizer (training), augmentation (data) and
# attacks (objectives), which need the task; last, model fields the model does not read (only
# meaningful once the model is known to be valid).
CHECKS = (
    ('ranges', lambda config, resolved: config_schema.check_values(config)),
    ('task', _check_task),
    ('mode and dtype', _check_mode_and_dtype),
    ('dataset', _check_dataset),
    ('model', _check_model),
    ('frozen collections', _check_frozen),
    ('optimizer', lambda config, resolved: optimizers.validate(config.optimizer)),
    ('augmentation', lambda config, resolved: augment.validate(config.augment,
                                                                 resolved.task_class)),
    ('attacks', lambda config, resolved: attacks.validate_config(config, resolved.task_class)),
    ('ignored model fields', _check_ignored_model_fields),
)


def validate_config(config):
  """One-line ConfigErrors for a config that cannot run, or that sets what its model ignores,
  before any data, model or device is touched (the device checks follow in
  `create_experiment`); returns what it resolved."""
  resolved = Resolved()
  for _, check in CHECKS:
    check(config, resolved)
  return resolved


def _check_devices(config):
  per_device, uneven = divmod(config.batch_size, jax.device_count())
  _require(uneven or per_device % config.grad_accum_steps == 0,
           f'grad_accum_steps {config.grad_accum_steps} does not divide the per-device batch '
           f'{per_device} (batch_size {config.batch_size} over {jax.device_count()} devices); '
           'pick a divisor of it.')


@dataclasses.dataclass(frozen=True, eq=False)
class Experiment:
  config: Any  # a FrozenConfigDict: the run's config, read-only all the way down
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
  resolved = validate_config(config)
  _check_devices(config)
  spec, shape = resolved.spec, resolved.image_shape
  task = tasks.create_task(config, spec.num_classes, shape)
  model = models.create_model(
      config.model, num_classes=spec.num_classes, num_channels=shape[-1],
      mean=spec.mean, std=spec.std, dtype=jnp.dtype(config.dtype))
  depthwise.prepare(config.model.depthwise_impl)
  dummy = jnp.zeros((1,) + shape, jnp.float32)
  variable_shapes = jax.eval_shape(
      lambda: model.init({'params': jax.random.PRNGKey(0)}, dummy, train=False))
  collections = tuple(sorted(c for c in variable_shapes if c != 'batch_stats'))
  declared = resolved.entry.collections
  if collections != declared:
    raise RuntimeError(f'{config.model.name} has collections {collections}, but models.py '
                       f'declares {declared}: correct its registry entry.')
  frozen = freezing.frozen_collections(config.mode, collections, config.frozen_collections)
  # A frozen copy: the caller may go on changing its ConfigDict (a sweep builds the next cell
  # from it) without changing the run this Experiment describes.
  return Experiment(ml_collections.FrozenConfigDict(config), spec, shape, task, model,
                    sharding.create_mesh(), collections, frozen)


def check_workdir_writable(workdir):
  """A one-line WorkdirError for a workdir we cannot write, before anything is computed."""
  if '://' in workdir:  # object stores (gs://) are checked by the first write
    return
  parent = workdir
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  target = workdir if os.path.exists(workdir) else parent or '.'
  if not os.path.isdir(target) or not os.access(target, os.W_OK | os.X_OK):
    raise errors.WorkdirError(f'Workdir {workdir!r} is not writable ({target!r}); pass a '
                              'folder you can write to with --workdir.')

