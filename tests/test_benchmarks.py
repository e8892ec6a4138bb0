"""Correctness of the throughput benchmark's pieces (nothing here is timed): the analytic
FLOP count against XLA's, the PyTorch twins against the JAX models, and the JSON it writes."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import flop_model
from benchmarks import harness
from benchmarks import throughput
from spatialmix_jax.data import datasets
from spatialmix_jax.modeling import freezing

# Wide and spatially small, so the convs dwarf the elementwise work (BatchNorm, activations,
# AdamW) that XLA counts and the analytic formula leaves out; ReLU, because XLA counts exact
# GELU's erf polynomial at ~15 % of this ConvMixer's conv FLOPs.
_WIDE_CONVMIXER = dict(name='convmixer', width=512, depth=2, kernel_size=3, patch_size=8,
                       act='relu')
_WIDE_RESNET = dict(name='sep_resnet_cifar', depth=8, kernel_size=3, depth_multiplier=9,
                    width_multiplier=4)


def _config(model, mode, impl='shift', batch=8):
  config = harness.make_config('convmixer_128_4_k8_p1', mode, impl, batch, 'float32')
  if model['name'] == 'sep_resnet_cifar':
    config = harness.make_config('sep_resnet20_d9', mode, impl, batch, 'float32')
  config.model.update(model)
  return config


def _analytic(config, batch):
  experiment = harness.build_experiment(config)
  layers = flop_model.layers_of(config.model, experiment.image_shape,
                                experiment.spec.num_classes, batch)
  return flop_model.analytic_flops(layers, experiment.frozen), experiment


@pytest.mark.parametrize('model,mode', [
    (_WIDE_CONVMIXER, 'full'), (_WIDE_CONVMIXER, 'chans'), (_WIDE_CONVMIXER, 'space'),
    (_WIDE_RESNET, 'full'), (_WIDE_RESNET, 'chans')])
def test_analytic_flops_match_xla_cost_analysis(model, mode):
  # 'shift' counts every tap as a multiply-add, as the formula does. XLA counts its
  # kernel-gradient scan body once (one batch chunk of the ResNet's 8, all of the
  # ConvMixer's), a loss of <= 3 % here; not 'xla', whose depthwise kernel gradient XLA:CPU
  # turns into a dense conv (C times the FLOPs).
  config = _config(model, mode)
  analytic, experiment = _analytic(config, 8)
  batch = harness.random_batch(experiment.spec, 8)
  compiled, *_ = harness.compiled_step(experiment, batch)
  ratio = harness.xla_flops(compiled) / analytic
  # Missing one gradient (dX or dW of the big pointwise convs) would be off by >= 20 %.
  assert 0.95 <= ratio <= 1.10, ratio


def test_frozen_modes_skip_weight_and_input_gradients():
  layers = [flop_model.Layer('a', 'stem', 10), flop_model.Layer('b', 'params', 0),
            flop_model.Layer('c', 'spatial', 100), flop_model.Layer('d', 'channel', 1000)]
  # full: stem fwd + dW; c, d fwd + dX + dW.
  assert flop_model.analytic_flops(layers, ()) == 2 * (10 * 2 + 100 * 3 + 1000 * 3)
  # chans: the stem costs only its forward; c keeps dX (the BatchNorm before it trains).
  assert flop_model.analytic_flops(layers, ('spatial', 'stem')) == 2 * (
      10 + 100 * 2 + 1000 * 3)
  # Nothing trainable before c: neither c nor d needs an input gradient.
  assert flop_model.analytic_flops(layers[2:], ('spatial',)) == 2 * (100 + 1000 * 2)


def test_conv_macs_of_sep_resnet_stage_widths():
  config = _config(dict(name='sep_resnet_cifar', depth=8, kernel_size=3, depth_multiplier=9,
                        width_multiplier=1), 'full')
  layers = {l.name: l.macs for l in flop_model.layers_of(config.model, (32, 32, 3), 10, 2)}
  assert layers['stem.depthwise'] == 2 * 32 * 32 * 27 * 9
  assert layers['stem.pointwise'] == 2 * 32 * 32 * 27 * 16
  # Stage 2 enters at stride 2: 16x16 outputs, a 1x1 projection shortcut 16 -> 32.
  assert layers['stage1.block0.shortcut'] == 2 * 16 * 16 * 16 * 32
  assert layers['stage1.block0.conv1.depthwise'] == 2 * 16 * 16 * 16 * 9 * 9
  assert layers['stage2.block0.conv2.pointwise'] == 2 * 8 * 8 * 64 * 9 * 64
  assert layers['head'] == 2 * 64 * 10


@pytest.mark.parametrize('model', [
    dict(name='convmixer', width=16, depth=2, kernel_size=8, patch_size=2),
    dict(name='sep_resnet_cifar', depth=8, kernel_size=3, depth_multiplier=9,
         width_multiplier=1)])
def test_torch_twin_matches_jax_model(model):
  torch = pytest.importorskip('torch')
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  spec = datasets.get_spec('cifar10')
  for mode in freezing.MODES:
    config = _config(model, mode, impl='xla')
    experiment = harness.build_experiment(config)
    variables = experiment.init_variables()
    twin = torch_models.create_model(config.model, num_classes=10, num_channels=3,
                                     mean=spec.mean, std=spec.std)
    torch_models.freeze(twin, mode)
    weights, _ = freezing.split_variables(variables)
    assert torch_models.parameter_report(twin) == freezing.parameter_report(
        weights, experiment.frozen), mode

  # Same weights -> same train-mode logits (batch statistics, even-kernel and stride-2
  # 'SAME' padding, normalisation, head).
  torch_models.load_jax_variables(twin, variables)
  images = harness.random_batch(spec, 4)['image']
  expected, _ = experiment.model.apply(variables, jnp.asarray(images), train=True,
                                       mutable=['batch_stats'])
  twin = twin.to(memory_format=torch.channels_last).train()
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(
      memory_format=torch.channels_last)
  got = twin(x).detach().numpy()
  np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_frozen_twin_gets_no_gradients_in_frozen_collections():
  torch = pytest.importorskip('torch')
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  config = _config(dict(name='convmixer', width=8, depth=1, kernel_size=3, patch_size=4),
                   'chans')
  spec = datasets.get_spec('cifar10')
  twin = torch_models.create_model(config.model, num_classes=10, num_channels=3,
                                   mean=spec.mean, std=spec.std)
  torch_models.freeze(twin, 'chans')
  twin(torch.rand(2, 3, 32, 32)).sum().backward()
  for module in twin.modules():
    for p in module.parameters(recurse=False):
      frozen = torch_models.collection_of(module) in ('spatial', 'stem')
      assert (p.grad is None) == frozen, type(module).__name__


def test_command_line_writes_a_record_per_row(tmp_path, monkeypatch):
  monkeypatch.setitem(harness.MODELS, 'tiny', (
      harness.MODELS['convmixer_128_4_k8_p1'][0],
      dict(name='convmixer', width=8, depth=1, kernel_size=3, patch_size=4)))
  out = tmp_path / 'tp.json'
  throughput.main(['--models', 'tiny', '--modes', 'full,space', '--impls', 'xla',
                   '--batch', '2', '--steps', '1', '--warmup', '0', '--matmul-size', '64',
                   '--no-torch', '--peak-tflops', '0.001',
                   # Every usable core: fewer would pin this whole test process.
                   '--threads', str(len(os.sched_getaffinity(0))),
                   '--out', str(out)])
  payload = json.loads(out.read_text())
  assert payload['meta']['jax_backend'] == jax.default_backend()
  assert payload['meta']['matmul_peak_gflops']['float32'] > 0
  rows = payload['records']
  assert [(r['model'], r['mode'], r['impl'], r['framework']) for r in rows] == [
      ('tiny', 'full', 'xla', 'jax'), ('tiny', 'space', 'xla', 'jax')]
  full, space = rows
  for r in rows:
    assert r['img_per_s'] == pytest.approx(2 / (r['step_ms'] * 1e-3))
    assert r['flops'] > 0 and r['analytic_flops'] > 0
    assert r['gflops_per_s'] == pytest.approx(r['analytic_flops'] / r['step_ms'] * 1e-6)
    assert r['mfu'] == pytest.approx(r['gflops_per_s'] / 1.0)  # peak 0.001 TFLOP/s
    assert np.isfinite(r['loss'])
    assert r['ratio_vs_torch'] is None  # no PyTorch row to compare with
  assert space['analytic_vs_full'] == pytest.approx(
      space['analytic_flops'] / full['analytic_flops'])
  assert space['analytic_flops'] < full['analytic_flops']


@pytest.mark.parametrize('argv,match', [
    (['--models', 'convmixer_9'], 'Unknown --models'),
    (['--modes', 'both'], 'Unknown --modes'),
    (['--impls', 'cuda'], 'Unknown --impls'),
    (['--dtype', 'float16'], 'Unknown --dtype'),
    (['--peak-tflops', 'fast'], '--peak-tflops'),
    (['--threads', '4096'], 'usable cores'),
    (['--include', '/nonexistent.json'], 'readable JSON'),
    (['--batch', '0'], 'must be >= 1')])
def test_bad_arguments_fail_before_compute(argv, match):
  with pytest.raises(ValueError, match=match):
    throughput.parse_args(argv + ['--out', '/dev/null'])
