"""spatialmix-jax: separable convolutions whose spatial or channel mixers can be frozen at their
random initialisation (Cazenavette, Julin, Lucey, "Rethinking the Role of Spatial Mixing").

The package is a stack of folders, one concept each. A module imports from its own folder and
from folders before it in this list, never from one after it (`tests/test_layout.py`):

  infra       where a run lives: the cache folder, the device mesh, figure files, and the
              project's own user-facing errors
  kernels     the depthwise operator and its implementations (XLA, shift, FFT, native C++ in
              csrc/, Pallas), and the native kernels' build
  modeling    the paper's object: separable layers, ConvMixer and separable ResNets, the model
              registry and presets, frozen-filter families, Full/Chans/Space freezing, norms
  data        datasets, TFDS builders, the tf.data input pipeline and augmentation
  objectives  what a model is asked to do and how it is scored: tasks (classification,
              pixel un-shuffling), the exact eval loop, adversarial attacks
  training    optimizers, the train state, the sharded step, checkpoints, progress, init_from
  config      the config schema, its checks, the command line, the immutable Experiment
  jobs        what `main.py --job=` runs: the training loop, the evaluation of a workdir, and
              the command itself (`spatialmix-jax` once installed)
  interop     PyTorch (timm, locuslab) weights in and out
  study       grids of runs, their records and reports, the paper's claims and verdicts,
              spectral analysis

The names below are the small public API for notebooks, loaded on first use so that importing
one submodule does not import them all:

  import spatialmix_jax as smx
  experiment = smx.create_experiment(config)      # config: configs/*.py get_config()
  smx.train_and_evaluate(config, workdir); smx.evaluate(config, workdir)

A regular package (not a namespace package): TFDS resolves the code path of the `digits`
builder through `importlib.resources`, which cannot resolve a namespace package under pip's
editable install.
"""

import importlib
import importlib.abc
import sys

FOLDERS = ('infra', 'kernels', 'modeling', 'data', 'objectives', 'training', 'config', 'jobs',
           'interop', 'study')

_PUBLIC = {
    'MODES': 'modeling.freezing',
    'frozen_collections': 'modeling.freezing',
    'parameter_report': 'modeling.freezing',
    'create_model': 'modeling.models',
    'PRESETS': 'modeling.presets',
    'get_config': 'config.config_schema',
    'validate_config': 'config.experiment',
    'create_experiment': 'config.experiment',
    'train_and_evaluate': 'jobs.train',
    'evaluate': 'jobs.evaluation',
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
  if name in _PUBLIC:
    return getattr(importlib.import_module(f'{__name__}.{_PUBLIC[name]}'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


# Modules that were top-level before the folders; `python -m spatialmix_jax.sweep` (or an
# import of the old name) says where each one went instead of "No module named ...".
_ENTRY_POINTS = {'sweep': 'study', 'report': 'study', 'reproduction': 'study',
                 'spectral': 'study', 'torch_weights': 'interop'}


class _MovedModules(importlib.abc.MetaPathFinder):

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    package, _, name = fullname.rpartition('.')
    if package == __name__ and name in _ENTRY_POINTS:
      raise ModuleNotFoundError(
          f'{fullname} moved to {__name__}.{_ENTRY_POINTS[name]}.{name}: run python -m '
          f'{__name__}.{_ENTRY_POINTS[name]}.{name} ...', name=fullname)
    return None


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
  sys.meta_path.append(_MovedModules())
