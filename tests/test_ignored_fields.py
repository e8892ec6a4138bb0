"""A config.model field that the chosen model does not read, set away from its schema default, is
a one-line ConfigError naming the model's own fields, for a run and for a whole grid; every
shipped config, grid cell and committed record still validates."""

import glob
import importlib
import os

import pytest

from conftest import REPO_ROOT
from spatialmix_jax.config import config_schema
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.infra import errors
from spatialmix_jax.jobs import evaluation
from spatialmix_jax.modeling import models
from spatialmix_jax.study import sweep

DEFAULTS = config_schema.get_config().model
# A value other than the schema default for each field a family might ignore.
AWAY = {'width': 64, 'patch_size': 2, 'act': 'relu', 'depth_multiplier': 9,
        'width_multiplier': 2, 'spatial_init': 'box', 'smooth_sigma': 2.0,
        'depthwise_impl': 'xla'}
IGNORED = {
    'convmixer': ('depth_multiplier', 'width_multiplier'),
    'unshuffle_convmixer': ('depth_multiplier', 'width_multiplier'),
    'sep_resnet_cifar': ('width', 'patch_size', 'act'),
    'sep_resnet_imagenet': ('width', 'patch_size', 'act'),
    # Plain convolutions: no depthwise filter for a multiplier or a filter setting to act on.
    'resnet_cifar': ('width', 'patch_size', 'act', 'depth_multiplier', 'spatial_init',
                     'smooth_sigma', 'depthwise_impl'),
    'resnet_imagenet': ('width', 'patch_size', 'act', 'depth_multiplier', 'spatial_init',
                        'smooth_sigma', 'depthwise_impl'),
}


def _model(name, **fields):
  model = config_schema.get_config().model
  model.name = name
  model.update(fields)
  return model


def test_every_model_family_is_covered():
  assert set(IGNORED) == set(models.MODELS)


@pytest.mark.parametrize('name', sorted(IGNORED))
def test_a_field_the_model_ignores_is_a_one_line_error_naming_its_fields(name):
  reads = models.get_entry(name).reads
  for field, value in AWAY.items():
    if field == 'smooth_sigma' and field in reads:  # read, but only by smooth filters
      continue
    model = _model(name, **{field: value})
    if field in IGNORED[name]:
      fields = ', '.join(f'model.{f}' for f in reads if f != 'name')
      with pytest.raises(errors.ConfigError, match=f'model.{field}=.* does nothing for {name}, '
                         f'whose fields are {fields}; leave model.{field} at its default') as error:
        models.check_ignored_fields(model, DEFAULTS)
      assert '\n' not in str(error.value)
    else:
      assert field in reads
      models.check_ignored_fields(model, DEFAULTS)


def test_smooth_sigma_does_nothing_without_smooth_filters():
  with pytest.raises(errors.ConfigError, match="spatial_init='random'; set model.spatial_init"):
    models.check_ignored_fields(_model('convmixer', smooth_sigma=2.0), DEFAULTS)
  models.check_ignored_fields(_model('convmixer', spatial_init='smooth', smooth_sigma=2.0),
                              DEFAULTS)


def test_the_check_runs_in_validation(tiny_config):
  tiny_config.model.width_multiplier = 2
  with pytest.raises(errors.ConfigError, match='model.width_multiplier=2 does nothing for '
                     'convmixer'):
    experiment_lib.validate_config(tiny_config)


def test_a_field_set_for_a_whole_grid_fails_before_any_cell_runs(tmp_path):
  from configs.sweeps import resnet_depth  # pylint: disable=g-import-not-at-top
  grid = resnet_depth.get_config('small')
  grid.base.model.width = 64  # what --config.base.model.width=64 does
  with pytest.raises(errors.ConfigError, match='model.width=64 does nothing for '
                     'sep_resnet_cifar'):
    sweep.run(grid, str(tmp_path / 'sweep'))
  assert not (tmp_path / 'sweep').exists()


def _config_files():
  """(module, variant) of every config file under configs/ that builds without arguments or
  with one of its named variants (workdir.py reads a workdir: the records below cover it)."""
  found = []
  for path in sorted(glob.glob(os.path.join(REPO_ROOT, 'configs', '*.py'))):
    name = os.path.basename(path)[:-3]
    if name.startswith('_') or name == 'workdir':
      continue
    module = importlib.import_module(f'configs.{name}')
    found += [(name, variant) for variant in getattr(module, 'PRESETS', {'': None})]
  return found


@pytest.mark.parametrize('name,variant', _config_files())
def test_every_shipped_config_validates(name, variant):
  module = importlib.import_module(f'configs.{name}')
  experiment_lib.validate_config(module.get_config(variant) if variant else module.get_config())


def test_every_committed_record_validates():
  paths = sorted(glob.glob(os.path.join(REPO_ROOT, 'docs', 'results', '**', 'config.json'),
                           recursive=True))
  assert len(paths) >= 100
  for path in paths:
    experiment_lib.validate_config(evaluation.load_saved_config(os.path.dirname(path)))
