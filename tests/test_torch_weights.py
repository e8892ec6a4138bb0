"""PyTorch ConvMixer weights in and out: timm's own model definitions and the locuslab layout
give the same logits as the imported Flax model, exports load with strict=True, imported runs
evaluate and fine-tune through the ordinary paths, and bad input is one line.

The tests that need torch/timm skip, saying so, without the `torch` extra; CI installs it.
"""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from spatialmix_jax.data import datasets
from spatialmix_jax.jobs import evaluation
from spatialmix_jax.config import experiment as experiment_lib
from spatialmix_jax.training import init_from
from spatialmix_jax.modeling import layers
from spatialmix_jax.modeling import models
from spatialmix_jax.interop import torch_layouts
from spatialmix_jax.interop import torch_weights
from spatialmix_jax.jobs import train
from tests import torch_helpers as th

from configs import workdir as workdir_config

TOLERANCE = 1e-4  # float32 logits, as the issue asks
IMAGENET = datasets.get_spec('imagenet2012')
# Small inputs: 2x2 patches for the patch-7 models, and for patch 14 at 28x28.
TIMM_INPUT_SIZES = {'convmixer_768_32': 14, 'convmixer_1536_20': 14,
                    'convmixer_1024_20_ks9_p14': 28}


@pytest.fixture(scope='module', autouse=True)
def digits_cache(tmp_path_factory):
  """A private cache folder (the digits dataset), so these tests neither need nor touch the
  user's; subprocesses inherit it."""
  path = str(tmp_path_factory.mktemp('digits_cache'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('SPATIALMIX_CACHE_DIR', path)
    yield path


def _flax_logits(config, variables, images):
  spec = datasets.get_spec(config.dataset)
  model = models.create_model(config.model, num_classes=spec.num_classes,
                              num_channels=images.shape[-1], mean=spec.mean, std=spec.std)
  return np.asarray(model.apply(variables, images, train=False))


def _depends_on_the_image(logits):
  """Whether two images' logits differ by well over the tolerance, so that a misplaced tensor
  that only changes what the image contributes (the stem, say) shows in the comparison.

  Deep random networks map different images to nearly the same features (BatchNorm offsets
  and position effects dominate), hence a factor 10 rather than more.
  """
  return np.abs(logits[0] - logits[1]).max() > 10 * TOLERANCE


def _run_cli(*argv):
  """The exit code of `python -m spatialmix_jax.interop.torch_weights ARGV`, run in-process."""
  try:
    torch_weights.main(list(argv))
  except SystemExit as e:
    return e.code
  return 0


# --- the mapping itself (numpy only: runs without the extra) ---


@pytest.mark.parametrize('layout', torch_layouts.LAYOUTS)
def test_layout_round_trip_is_exact(layout):
  arch = torch_layouts.Architecture(width=6, depth=3, kernel_size=5, patch_size=2, in_chans=1,
                                    num_classes=4)
  rng = np.random.default_rng(0)
  state_dict = {slot.key: (rng.normal(size=slot.shape).astype(np.float32) if slot.collection
                           else np.asarray(3, np.int64))
                for slot in torch_layouts.slots(layout, arch)}
  found, variables = torch_layouts.to_flax(state_dict, layout)
  assert found == arch
  assert variables['spatial']['DepthwiseConv_2']['kernel'].shape == (5, 5, 1, 6)
  assert variables['stem']['PatchStem_0']['conv']['kernel'].shape == (2, 2, 1, 6)
  assert variables['batch_stats']['BatchNorm_6']['var'].shape == (6,)
  back = torch_layouts.from_flax(variables, layout, arch, num_batches_tracked=3)
  assert list(back) == list(state_dict)  # torch's state_dict order
  for key, value in state_dict.items():
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_unknown_model_name_says_what_is_expected():
  with pytest.raises(torch_layouts.WeightsError, match='expected one of convmixer_1024_20'):
    torch_layouts.parse_spec('timm:convmixer_2048_99', 'source')


def test_missing_torch_is_a_one_line_hint(tmp_path, monkeypatch, capsys):
  checkpoint = tmp_path / 'model.pth'
  checkpoint.write_bytes(b'not used')
  monkeypatch.setitem(sys.modules, 'torch', None)  # import torch now raises ImportError
  code = _run_cli('import', '--source=locuslab', f'--checkpoint={checkpoint}',
                  f'--workdir={tmp_path / "run"}')
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and 'pip install -e ".[torch]"' in err[0], err


# --- timm's model definitions ---


def test_name_table_is_timms():
  timm = th.import_timm()
  torch = th.import_torch()
  assert sorted(timm.list_models('convmixer*')) == sorted(torch_layouts.TIMM_MODELS)
  for name, expected in torch_layouts.TIMM_MODELS.items():
    # On the meta device: shapes and modules without drawing 20-50M random weights.
    model = timm.create_model(name, pretrained=False, device='meta')
    shapes = {key: np.broadcast_to(np.float32(0), value.shape)
              for key, value in model.state_dict().items()}
    arch = torch_layouts.read_architecture(shapes, 'timm')
    act = 'relu' if isinstance(model.stem[1], torch.nn.ReLU) else 'gelu'
    assert isinstance(model.stem[1], (torch.nn.ReLU, torch.nn.GELU))
    assert getattr(model.stem[1], 'approximate', 'none') == 'none'  # exact GELU, as ours
    # Flax's momentum weights the running average, torch's the new batch.
    ours = layers.BatchNorm.keywords
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
      assert (bn.eps, bn.momentum) == (ours['epsilon'], pytest.approx(1 - ours['momentum']))
    assert dict(width=arch.width, depth=arch.depth, kernel_size=arch.kernel_size,
                patch_size=arch.patch_size, act=act) == expected


@pytest.mark.parametrize('name', sorted(TIMM_INPUT_SIZES))
def test_timm_import_matches_and_export_loads_strictly(name):
  size = TIMM_INPUT_SIZES[name]
  model = th.randomised_timm_model(name)
  images = th.random_images((2, size, size, 3))
  expected = th.torch_logits(model, images, IMAGENET.mean, IMAGENET.std)
  assert _depends_on_the_image(expected)

  arch, variables = torch_layouts.to_flax(th.state_dict_arrays(model), 'timm')
  config = torch_weights.imported_config(arch, torch_layouts.TIMM_MODELS[name]['act'],
                                         'imagenet2012')
  logits = _flax_logits(config, variables, images)
  assert np.abs(logits - expected).max() <= TOLERANCE

  exported = torch_layouts.from_flax(variables, 'timm', arch, num_batches_tracked=7)
  torch = th.import_torch()
  fresh = th.emptied_copy(model)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
  np.testing.assert_array_equal(th.torch_logits(fresh, images, IMAGENET.mean, IMAGENET.std),
                                expected)


def test_timm_cli_import_evaluates_and_exports(tmp_path):
  """convmixer_768_32 (ReLU) through the files: import -> the eval restore -> export."""
  name = 'convmixer_768_32'
  model = th.randomised_timm_model(name)
  images = th.random_images((2, 14, 14, 3), seed=1)
  expected = th.torch_logits(model, images, IMAGENET.mean, IMAGENET.std)
  assert _depends_on_the_image(expected)
  # As training scripts save it: wrapped, and with DistributedDataParallel's prefix.
  wrapped = {'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}, 'epoch': 3}
  checkpoint = th.save(wrapped, tmp_path / 'in.pth')
  workdir = str(tmp_path / 'run')
  assert _run_cli('import', f'--source=timm:{name}', f'--checkpoint={checkpoint}',
                  f'--workdir={workdir}') == 0

  config = workdir_config.get_config(workdir)
  assert (config.dataset, config.mode, config.model.act) == ('imagenet2012', 'full', 'relu')
  experiment = experiment_lib.create_experiment(config)
  state, step = evaluation.restore_for_eval(config, workdir, experiment)
  assert step == 0
  logits = np.asarray(experiment.model.apply(evaluation.model_variables(state), images,
                                             train=False))
  assert np.abs(logits - expected).max() <= TOLERANCE

  output = str(tmp_path / 'out.pth')
  assert _run_cli('export', f'--workdir={workdir}', f'--target=timm:{name}',
                  f'--output={output}') == 0
  reloaded = th.load_strictly(th.emptied_copy(model), output)
  np.testing.assert_array_equal(th.torch_logits(reloaded, images, IMAGENET.mean,
                                                IMAGENET.std), expected)


# --- the locuslab layout ---


# 4: torch and lax pad an even kernel alike; .safetensors: the format of timm's hub weights.
@pytest.mark.parametrize('kernel_size,suffix', [(5, '.pth'), (4, '.safetensors')])
def test_locuslab_import_matches_and_export_loads_strictly(tmp_path, kernel_size, suffix):
  model = th.randomise(th.locuslab_convmixer(48, 3, kernel_size, patch_size=2, n_classes=10),
                       (8, 3, 16, 16))
  cifar = datasets.get_spec('cifar10')
  images = th.random_images((2, 12, 12, 3))
  expected = th.torch_logits(model, images, cifar.mean, cifar.std)
  assert _depends_on_the_image(expected)
  checkpoint = th.save(model.state_dict(), tmp_path / f'locuslab{suffix}')
  workdir = str(tmp_path / 'run')
  assert _run_cli('import', '--source=locuslab', f'--checkpoint={checkpoint}',
                  f'--workdir={workdir}') == 0  # (3 channels, 10 classes): cifar10
  config = workdir_config.get_config(workdir)
  assert config.dataset == 'cifar10' and config.model.kernel_size == kernel_size
  weights, batch_stats, _ = init_from.read_weights(workdir)
  logits = _flax_logits(config, {**weights, 'batch_stats': batch_stats}, images)
  assert np.abs(logits - expected).max() <= TOLERANCE

  output = str(tmp_path / 'out.pth')
  assert _run_cli('export', f'--workdir={workdir}', '--target=locuslab',
                  f'--output={output}') == 0
  fresh = th.locuslab_convmixer(48, 3, kernel_size, patch_size=2, n_classes=10)
  np.testing.assert_array_equal(
      th.torch_logits(th.load_strictly(fresh, output), images, cifar.mean, cifar.std),
      expected)


def _digits_eval_batches(config):
  experiment = experiment_lib.create_experiment(config)
  from spatialmix_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  data = input_pipeline.create_eval_data(experiment)
  return list(data.iterate())


def test_imported_model_evaluates_and_fine_tunes_in_chans_mode(tmp_path, digits_cache):
  digits = datasets.get_spec('digits')
  model = th.randomise(th.locuslab_convmixer(16, 2, 3, patch_size=1, n_classes=10,
                                             in_chans=1), (64, 1, 8, 8), seed=2)
  checkpoint = th.save(model.state_dict(), tmp_path / 'digits.pth')
  source = str(tmp_path / 'imported')
  assert _run_cli('import', '--source=locuslab', f'--checkpoint={checkpoint}',
                  f'--workdir={source}', '--dataset=digits') == 0
  imported, _, _ = init_from.read_weights(source)

  # main.py --job=eval on the imported workdir agrees with PyTorch on the test digits, and
  # runs where torch cannot be imported: main.py imports the trainer and the evaluator.
  blocker = tmp_path / 'no_torch' / 'torch'
  blocker.mkdir(parents=True)
  (blocker / '__init__.py').write_text('raise ImportError("training must not need torch")\n')
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [str(blocker.parent)] + [p for p in [os.environ.get('PYTHONPATH')] if p])}
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  evaluated = subprocess.run(
      [sys.executable, 'main.py', f'--config=configs/workdir.py:{source}', f'--workdir={source}',
       '--job=eval', f'--config.data_dir={digits_cache}'],
      cwd=repo, env=env, capture_output=True, text=True)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  with open(os.path.join(source, 'eval.json')) as f:
    record = json.load(f)
  batches = _digits_eval_batches(workdir_config.get_config(source))
  correct = sum(int(np.sum((th.torch_logits(model, b['image'], digits.mean, digits.std)
                            .argmax(-1) == b['label']) * b['mask'])) for b in batches)
  assert record['num_test_examples'] == 360
  assert abs(record['test_accuracy'] - correct / 360) <= 1 / 360  # at most one near-tie

  # Fine-tune in chans mode from the import: spatial and stem stay bitwise the imported ones.
  config = workdir_config.get_config(source)
  config.update(mode='chans', init_from=source, num_train_steps=4, batch_size=32,
                log_every_steps=2, checkpoint_every_steps=2, data_dir=digits_cache)
  target = str(tmp_path / 'chans')
  summary = train.train_and_evaluate(config, target)
  tuned, _, step = init_from.read_weights(target)
  assert step == 4 and summary['frozen_unchanged'] is True
  for collection in ('spatial', 'stem'):
    jax.tree.map(np.testing.assert_array_equal, tuned[collection], imported[collection])
  assert not np.array_equal(tuned['channel']['PointwiseConv_0']['kernel'],
                            imported['channel']['PointwiseConv_0']['kernel'])

  # Resuming ignores init_from: with the source gone, the run restores its own step 4 and
  # still compares its frozen collections with the start it recorded.
  os.rename(source, source + '.moved')
  summary = train.train_and_evaluate(config, target)
  assert summary['step'] == 4 and summary['frozen_unchanged'] is True
  os.remove(os.path.join(target, evaluation.FROZEN_START))  # a run from before the record
  summary = train.train_and_evaluate(config, target)
  assert summary['step'] == 4 and summary['frozen_unchanged'] is None


def test_init_from_another_architecture_is_one_line(tmp_path, tiny_config, digits_cache):
  model = th.locuslab_convmixer(8, 2, 3, patch_size=1, n_classes=10, in_chans=1)
  checkpoint = th.save(model.state_dict(), tmp_path / 'small.pth')
  source = str(tmp_path / 'imported')
  assert _run_cli('import', '--source=locuslab', f'--checkpoint={checkpoint}',
                  f'--workdir={source}', '--dataset=digits') == 0
  tiny_config.update(init_from=source, data_dir=digits_cache)  # width 16, not 8
  with pytest.raises(ValueError, match='^init_from .* another architecture .*first '
                     'difference: .*: \\(.*8.*\\) there vs \\(.*16.*\\) in this config'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'run'))


# --- bad input: one line, exit code 2, nothing written ---


def _small_timm_state_dict():
  th.import_timm()
  from timm.models import convmixer  # pylint: disable=g-import-not-at-top
  return convmixer.ConvMixer(dim=8, depth=2, kernel_size=3, patch_size=2,
                             num_classes=10).state_dict()


def _bad_checkpoint(kind, path):
  """(file, --source) of each kind of bad input."""
  torch = th.import_torch()
  if kind == 'truncated':
    th.save(_small_timm_state_dict(), path)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])
    return path, 'timm:convmixer_768_32'
  if kind == 'list':
    return th.save([torch.zeros(2)], path), 'locuslab'
  if kind == 'pickled module':
    return th.save(torch.nn.Linear(2, 2), path), 'locuslab'
  state_dict = _small_timm_state_dict()
  source = 'timm:convmixer_768_32' if kind == 'other timm model' else 'timm:convmixer_768_32x'
  if kind == 'unknown key':
    state_dict['blocks.1.5.weight'] = torch.zeros(8)
  elif kind == 'wrong shape':
    state_dict['blocks.1.1.weight'] = torch.zeros(8, 8, 3, 3)
  elif kind == 'missing tensor':
    del state_dict['blocks.1.3.running_var']
  elif kind == 'not a convmixer':
    state_dict = {'conv1.weight': torch.zeros(8, 3, 7, 7), 'fc.weight': torch.zeros(10, 8)}
  if kind in ('unknown key', 'wrong shape', 'missing tensor', 'not a convmixer'):
    source = 'timm:convmixer_768_32'
  return th.save(state_dict, path), source


_BAD_INPUT = [
    ('truncated', 'not a readable PyTorch checkpoint'),
    ('list', 'holds list; expected a state dict'),
    ('pickled module', 'holds Python objects besides tensors'),
    ('unknown key', "Unexpected tensor 'blocks.1.5.weight'"),
    ('wrong shape', "Tensor 'blocks.1.1.weight' has shape \\(8, 8, 3, 3\\), expected "
                    "\\(8, 8, 1, 1\\)"),
    ('missing tensor', "Missing tensor 'blocks.1.3.running_var'"),
    ('not a convmixer', "Not a timm ConvMixer state dict: no tensor 'stem.0.weight'"),
    ('other timm model', 'convmixer_768_32 .* is not this model: it has width 8'),
    ('unknown name', "Unknown ConvMixer 'convmixer_768_32x' .* expected one of"),
]


@pytest.mark.parametrize('kind,message', _BAD_INPUT, ids=[kind for kind, _ in _BAD_INPUT])
def test_bad_input_is_one_line(tmp_path, capsys, kind, message):
  checkpoint, source = _bad_checkpoint(kind, str(tmp_path / 'bad.pth'))
  workdir = tmp_path / 'run'
  code = _run_cli('import', f'--source={source}', f'--checkpoint={checkpoint}',
                  f'--workdir={workdir}')
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1, err
  assert err[0].startswith('error: ')
  assert re.search(message, err[0]), err[0]
  assert not workdir.exists()


def test_export_to_another_architecture_is_one_line(tmp_path, capsys):
  model = th.locuslab_convmixer(8, 2, 3, patch_size=2, n_classes=10)
  checkpoint = th.save(model.state_dict(), tmp_path / 'small.pth')
  workdir = str(tmp_path / 'run')
  assert _run_cli('import', '--source=locuslab', f'--checkpoint={checkpoint}',
                  f'--workdir={workdir}') == 0
  output = tmp_path / 'out.pth'
  code = _run_cli('export', f'--workdir={workdir}', '--target=timm:convmixer_1536_20',
                  f'--output={output}')
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1, err
  assert 'convmixer_1536_20 (from --target) is not this model: it has width 8' in err[0]
  assert not output.exists()
