"""Import PyTorch ConvMixer weights (timm or locuslab layout) into a workdir, and export back.

  python -m spatialmix_jax.interop.torch_weights import --source=timm:convmixer_768_32 \\
      --checkpoint=convmixer_768_32.pth --workdir=DIR
  python -m spatialmix_jax.interop.torch_weights import --source=locuslab --checkpoint=FILE.pth \\
      --workdir=DIR [--act=gelu|relu] [--dataset=cifar10]
  python -m spatialmix_jax.interop.torch_weights export --workdir=DIR --target=timm:convmixer_768_32 \\
      --output=FILE.pth

Import reads width, depth, kernel, patch, input channels and classes from the tensors
(`torch_layouts`), writes DIR/config.json (the dataset's recipe with that architecture, mode
full, float32) and an Orbax train state at step 0 in DIR/checkpoints/. Then:

  python main.py --config=configs/workdir.py:DIR --workdir=DIR --job=eval
  python main.py --config=configs/workdir.py:DIR --config.init_from=DIR \\
      --config.mode=chans --workdir=NEW           # fine-tune in any mode

The models normalise their inputs with the dataset's mean/std (ImageNet's for imagenet2012,
as timm's ConvMixers expect), so imported logits equal the PyTorch model's on normalised
images. `--source=timm:NAME` / `locuslab:NAME` also checks the tensors and the activation
against timm's model NAME (ReLU for convmixer_768_32, GELU otherwise); plain `locuslab`
takes `--act` (GELU, as locuslab's convmixer.py, by default).

torch is needed only here (the `torch` extra: pip install -e ".[torch]"); training never
imports it. Bad input is one line on stderr and exit code 2, before anything is written.
"""

import argparse
import json
import os
import sys

import numpy as np

from spatialmix_jax.config import config_schema
from spatialmix_jax.config import recipes
from spatialmix_jax.data import datasets
from spatialmix_jax.infra import errors
from spatialmix_jax.interop import torch_layouts
from spatialmix_jax.interop.torch_layouts import WeightsError

# Recipe of the config written for each dataset (config/recipes.py, which the configs of the
# same names return); other datasets start from the schema's defaults.
_RECIPES = {'imagenet2012': recipes.convmixer_imagenet, 'cifar10': recipes.convmixer_cifar10,
            'cifar100': recipes.convmixer_cifar10, 'digits': recipes.digits}
# The dataset a checkpoint was most likely trained on, from (input channels, classes).
_DEFAULT_DATASETS = {(3, 1000): 'imagenet2012', (3, 10): 'cifar10', (3, 100): 'cifar100'}


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise WeightsError('Reading and writing PyTorch checkpoints needs torch: install the '
                       'extra with pip install -e ".[torch]".') from None
  return torch


def _unwrap(obj, path):
  """The {name: tensor} state dict inside what torch.load returned."""
  torch = _torch()
  expected = ('expected a state dict (a mapping of tensor names to tensors, as '
              'torch.save(model.state_dict(), FILE) writes)')
  # Training scripts (timm's included) save {'state_dict': ..., 'epoch': ...}.
  if isinstance(obj, dict):
    for wrapper in ('state_dict', 'model'):
      if isinstance(obj.get(wrapper), dict):
        obj = obj[wrapper]
        break
  if not isinstance(obj, dict) or not obj:
    held = 'an empty dict' if isinstance(obj, dict) else type(obj).__name__
    raise WeightsError(f'{path!r} holds {held}; {expected}.')
  for key, value in obj.items():
    if not isinstance(key, str) or not isinstance(value, torch.Tensor):
      raise WeightsError(f'{path!r} is not a state dict: entry {key!r} is a '
                         f'{type(value).__name__}, not a tensor; {expected}.')
  if all(key.startswith('module.') for key in obj):  # saved from DistributedDataParallel
    obj = {key[len('module.'):]: value for key, value in obj.items()}
  return obj


def load_state_dict(path):
  """{name: numpy array} from a .pth/.pt/.bin (torch.save) or .safetensors file."""
  if not os.path.isfile(path):
    raise WeightsError(f'No checkpoint file {path!r}.')
  torch = _torch()
  try:
    if path.endswith('.safetensors'):
      from safetensors.torch import load_file  # pylint: disable=g-import-not-at-top
      obj = load_file(path)
    else:
      # weights_only: a checkpoint is data; never run code pickled into it.
      obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    if 'Weights only load failed' in str(e):
      raise WeightsError(f'{path!r} holds Python objects besides tensors, so it is not a state '
                         'dict; save one with torch.save(model.state_dict(), FILE) (for a '
                         "training checkpoint: torch.save(ckpt['state_dict'], FILE)).") from None
    raise WeightsError(f'{path!r} is not a readable PyTorch checkpoint (truncated or not '
                       f'written by torch.save?): {reason}.') from None
  state_dict = _unwrap(obj, path)
  # numpy has no bfloat16: every floating tensor goes through float32, which holds it exactly.
  return {key: (value.detach().float() if value.is_floating_point() else value.detach()).numpy()
          for key, value in state_dict.items()}


def save_state_dict(arrays, path):
  """torch.save of {name: tensor} from {name: numpy array}, written whole or not at all."""
  torch = _torch()
  state_dict = {key: torch.from_numpy(np.array(value)) for key, value in arrays.items()}
  tmp = f'{path}.tmp'
  torch.save(state_dict, tmp)
  os.replace(tmp, path)


def imported_config(arch, act, dataset):
  """The config of an imported model: `dataset`'s recipe with the tensors' architecture."""
  spec = datasets.get_spec(dataset)
  if spec.num_classes != arch.num_classes or spec.image_shape[-1] != arch.in_chans:
    raise WeightsError(
        f'The checkpoint is a {arch.describe()}, but {dataset} has {spec.num_classes} classes '
        f'and {spec.image_shape[-1]} channels; pass --dataset=NAME of a matching dataset.')
  config = _RECIPES.get(dataset, config_schema.get_config)()
  config.dataset = dataset
  config.task = 'classification'
  # Every collection trainable, so the written optimizer state is a full one; other modes
  # start from the imported weights through config.init_from.
  config.mode = 'full'
  config.frozen_collections = None
  config.dtype = 'float32'  # the precision the PyTorch model computes in
  config.model.update(name='convmixer', width=arch.width, depth=arch.depth,
                      kernel_size=arch.kernel_size, patch_size=arch.patch_size, act=act)
  return config


def _check_new_workdir(workdir):
  for name in ('checkpoints', 'config.json'):
    if os.path.exists(os.path.join(workdir, name)):
      raise WeightsError(f'{workdir!r} already holds a run ({name}); import into a new workdir.')


def write_run(config, workdir, weights, batch_stats):
  """DIR/config.json and a step-0 train state of `config` holding the given variables."""
  # Imported here: they pull in TensorFlow and the trainer, which argument errors need not.
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.training import checkpointing  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.config import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.training import init_from  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.infra import sharding  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.training import train_state  # pylint: disable=g-import-not-at-top

  experiment = experiment_lib.create_experiment(config)
  experiment_lib.check_workdir_writable(workdir)
  tx, _ = train_state.create_optimizer(experiment, total_steps=1, steps_per_epoch=1)
  target = train_state.abstract_state(experiment, tx)
  difference = init_from.first_difference(weights, batch_stats, target.weights,
                                          target.batch_stats)
  if difference:
    raise WeightsError('The imported variables do not fit the model the config builds '
                       '(first difference: {}: {} imported vs {} built).'.format(*difference))
  repl = sharding.replicated(experiment.mesh)
  weights, batch_stats = jax.device_put((weights, batch_stats), repl)
  state = train_state.TrainState(step=jnp.zeros((), jnp.int32), weights=weights,
                                 batch_stats=batch_stats, opt_state=tx.init(weights))
  os.makedirs(workdir, exist_ok=True)
  checkpoints = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  checkpoints.save(0, state.as_dict())
  checkpoints.close()
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(json.loads(config.to_json_best_effort()), f, indent=2, sort_keys=True)


def import_weights(source, checkpoint, workdir, dataset=None, act=None):
  """Writes `checkpoint` (a PyTorch state dict) into `workdir` as a run; returns its config."""
  layout, name = torch_layouts.parse_spec(source, 'source')
  if name and act and act != torch_layouts.TIMM_MODELS[name]['act']:
    raise WeightsError(f'--act={act} contradicts {name}, which uses '
                       f'{torch_layouts.TIMM_MODELS[name]["act"]}.')
  act = torch_layouts.TIMM_MODELS[name]['act'] if name else act or 'gelu'
  if act not in ('gelu', 'relu'):
    raise WeightsError(f'--act={act!r}: expected gelu or relu.')
  _check_new_workdir(workdir)
  arch, variables = torch_layouts.to_flax(load_state_dict(checkpoint), layout)
  if name:
    torch_layouts.check_named_model(arch, act, name, 'source')
  dataset = dataset or _DEFAULT_DATASETS.get((arch.in_chans, arch.num_classes))
  if dataset is None:
    raise WeightsError(f'The checkpoint is a {arch.describe()}; pass --dataset=NAME (one of '
                       f'{", ".join(sorted(datasets.DATASETS))}) for the data it takes.')
  config = imported_config(arch, act, dataset)
  batch_stats = variables.pop('batch_stats')
  write_run(config, workdir, variables, batch_stats)
  return config


def export_weights(workdir, target, output):
  """Writes the latest checkpoint of `workdir` as a `target`-layout state dict to `output`."""
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.training import init_from  # pylint: disable=g-import-not-at-top
  layout, name = torch_layouts.parse_spec(target, 'target')
  config = evaluation.load_saved_config(workdir)
  if config.model.name != 'convmixer':
    raise WeightsError(f'{workdir!r} holds a {config.model.name}; only convmixer models have '
                       'a PyTorch ConvMixer counterpart.')
  spec = datasets.get_spec(config.dataset)
  mc = config.model
  arch = torch_layouts.Architecture(mc.width, mc.depth, mc.kernel_size, mc.patch_size,
                                    spec.image_shape[-1], spec.num_classes)
  if name:
    torch_layouts.check_named_model(arch, mc.act, name, 'target')
  elif mc.act != 'gelu':
    raise WeightsError(f'{workdir!r} uses {mc.act}, but locuslab\'s convmixer.py is GELU only; '
                       'pass --target=locuslab:NAME of a ReLU model or a timm target.')
  directory = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
    raise WeightsError(f'Cannot write {output!r}: {directory!r} is not a writable folder.')
  weights, batch_stats, step = init_from.read_weights(workdir)
  arrays = torch_layouts.from_flax({**weights, 'batch_stats': batch_stats}, layout, arch,
                                   num_batches_tracked=step)
  save_state_dict(arrays, output)
  extra = ''.join(f', {field}={value}' for field, value, default in (
      ('num_classes', arch.num_classes, 1000), ('in_chans', arch.in_chans, 3))
                  if value != default)
  build = (f"timm.create_model('{name}'{extra})" if layout == 'timm' else
           f'ConvMixer({arch.width}, {arch.depth}, kernel_size={arch.kernel_size}, '
           f'patch_size={arch.patch_size}, n_classes={arch.num_classes})')
  return {'output': output, 'step': step, 'load_with': f'{build}.load_state_dict('
          f"torch.load('{output}'), strict=True)",
          'input_normalisation': {'mean': list(spec.mean), 'std': list(spec.std)}}


def _parser():
  parser = argparse.ArgumentParser(prog='python -m spatialmix_jax.interop.torch_weights',
                                   description=__doc__.split('\n\n')[0])
  commands = parser.add_subparsers(dest='command', required=True)
  imports = commands.add_parser('import', help='PyTorch state dict -> workdir')
  imports.add_argument('--source', required=True, help='timm:NAME, locuslab or locuslab:NAME')
  imports.add_argument('--checkpoint', required=True, help='.pth/.pt/.bin or .safetensors')
  imports.add_argument('--workdir', required=True, help='a new folder for the run')
  imports.add_argument('--dataset', help='the data the model takes (default: imagenet2012 for '
                       '1000 classes, cifar10/cifar100 for 10/100)')
  imports.add_argument('--act', help='gelu or relu, for --source=locuslab (default gelu)')
  exports = commands.add_parser('export', help='workdir -> PyTorch state dict')
  exports.add_argument('--workdir', required=True)
  exports.add_argument('--target', required=True, help='timm:NAME, locuslab or locuslab:NAME')
  exports.add_argument('--output', required=True, help='the .pth file to write')
  return parser


def main(argv=None):
  args = _parser().parse_args(argv)
  try:
    if args.command == 'import':
      config = import_weights(args.source, args.checkpoint, args.workdir, args.dataset,
                              args.act)
      print(json.dumps({'workdir': args.workdir, 'dataset': config.dataset,
                        'model': config.model.to_dict(), 'evaluate': (
                            f'python main.py --config=configs/workdir.py:{args.workdir} '
                            f'--workdir={args.workdir} --job=eval')}, indent=1))
    else:
      print(json.dumps(export_weights(args.workdir, args.target, args.output), indent=1))
  except errors.UserError as e:
    # WeightsError and the package's config/checkpoint/workdir errors; anything else (a
    # library's failure, a bug) keeps its traceback.
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  main()
