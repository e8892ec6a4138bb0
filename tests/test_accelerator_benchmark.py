"""The accelerator benchmark (benchmarks/accelerator.py) before any GPU hour: its CPU smoke run
measures every row, its import path holds no TensorFlow, bad flags are one line before any
compute, a failing or over-budget row is recorded rather than fatal, and its timm peers are
the JAX models, parameter for parameter."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import jax
import pytest

from benchmarks import accelerator
from benchmarks import harness
from benchmarks import torch_peers
from spatialmix_jax.kernels import depthwise
from spatialmix_jax.modeling import freezing
from spatialmix_jax.interop import torch_layouts
from tests import torch_helpers as th

from conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, 'benchmarks', 'accelerator.py')
TF_MODULES = ('tensorflow', 'tensorflow_datasets', 'clu')


def _finite_positive(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_cpu_run_measures_every_mode_and_impl(tmp_path):
  # The literal smoke command, on the target model only: the other two differ in recipe and
  # shape, which test_timm_peers_are_the_jax_models and the fake-timing tests below cover.
  out = tmp_path / 'quick.json'
  completed = subprocess.run(
      [sys.executable, SCRIPT, '--quick', '--models', 'convmixer_768_32', '--out', str(out)],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  payload = json.loads(out.read_text())
  meta, rows = payload['meta'], payload['records']
  assert meta['complete'] and meta['jax_backend'] == 'cpu' and meta['quick']
  assert _finite_positive(meta['matmul_peak_tflops']['bfloat16'])
  jax_rows = [r for r in rows if r['framework'] == 'jax']
  assert {(r['mode'], r['impl']) for r in jax_rows} == {
      (m, i) for m in freezing.MODES for i in accelerator.CPU_IMPLS}
  for r in rows:
    assert r['status'] == 'ok', r
    assert (r['batch'], r['image_size'], r['arch']['width']) == (4, 32, 32)
    for key in ('img_per_s', 'step_ms', 'tflops_per_s', 'mfu', 'analytic_flops'):
      assert _finite_positive(r[key]), (key, r)
    assert r['img_per_s'] == pytest.approx(4 / (r['step_ms'] * 1e-3))
    assert math.isfinite(r['loss'])
    # Its own table line: model, mode and the impl (or layout) as the printed label shows it.
    assert any(line.split()[:4] == [r['model'], r['mode'], r['framework'][:4],
                                    r['impl'] if r['impl'] != 'auto' else
                                    f"auto={r['resolved_impl']}"]
               for line in completed.stdout.splitlines())
  for r in jax_rows:
    assert _finite_positive(r['memory_bytes']) and _finite_positive(r['compile_s'])
  flops = {r['mode']: r['analytic_flops'] for r in jax_rows}
  assert flops['chans'] < flops['full'] and flops['space'] < flops['full']
  timm_rows = [r for r in rows if r['framework'] == 'timm']
  if meta['torch_rows'] != 'timm':  # no torch/timm here: skipped, saying why
    assert meta['torch_rows'].startswith('skipped: ') and not timm_rows
    return
  assert {(r['mode'], r['impl']) for r in timm_rows} == {
      (m, layout) for m in freezing.MODES for layout in torch_peers.LAYOUTS}
  for r in timm_rows:
    assert r['torch_model'].startswith('timm ConvMixer(dim=32, depth=2, kernel_size=7')
  assert all(_finite_positive(r['ratio_vs_timm']) for r in jax_rows)
  assert len(meta['target_jax_vs_timm']) == 3


_IMPORT_CHECK = '''
import json, sys
sys.path.insert(0, {root!r})
from benchmarks import accelerator, accelerator_report, flop_model, harness, torch_peers
from configs import convmixer_cifar10, convmixer_imagenet
from spatialmix_jax.config import experiment
from spatialmix_jax.infra import sharding
from spatialmix_jax.kernels import depthwise, depthwise_pallas
from spatialmix_jax.modeling import models
from spatialmix_jax.training import train_state, train_step
parent = sorted(m for m in {tf!r} + ('torch',) if m in sys.modules)
torch, timm = torch_peers.import_torch_and_timm()  # what the PyTorch child process imports
child = sorted(m for m in {tf!r} if m in sys.modules)
print(json.dumps([parent, child, torch is not None]))
'''


def test_benchmark_path_imports_no_tensorflow():
  # A fresh interpreter: this test process has imported TensorFlow through other tests.
  completed = subprocess.run(
      [sys.executable, '-c', _IMPORT_CHECK.format(root=REPO_ROOT, tf=TF_MODULES)],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  parent, child, _ = json.loads(completed.stdout.strip().splitlines()[-1])
  # torch too stays out of the JAX process: its CUDA libraries would clash with jaxlib's.
  assert parent == [] and child == []


@pytest.mark.parametrize('argv,match', [
    (['--models', 'convmixer_9'], "Unknown --models ['convmixer_9']"),
    (['--modes', 'both'], 'Unknown --modes'),
    (['--impls', 'cuda'], 'Unknown --impls'),
    (['--torch-layouts', 'nhwc'], 'Unknown --torch-layouts'),
    (['--batch', '0'], '--batch and --steps must be >= 1'),
    (['--warmup', '-1'], '--warmup >= 0'),
    (['--time-budget-s', '0'], '--time-budget-s must be > 0'),
    (['--steps', 'ten'], "invalid int value: 'ten'"),
    (['--bogus'], 'unrecognized arguments: --bogus'),
])
def test_bad_arguments_are_one_line_before_compute(argv, match, tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(harness, 'matmul_gflops', _no_compute)
  out = tmp_path / 'a.json'
  with pytest.raises(SystemExit) as exit_info:
    accelerator.main(['--quick', '--out', str(out)] + argv)
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and match in lines[0]
  assert not out.exists()


def _no_compute(*args, **kwargs):
  raise AssertionError('computed before the arguments were checked')


def test_cli_refuses_full_size_rows_on_cpu_and_unwritable_output(tmp_path):
  for argv, match in ((['--out', str(tmp_path / 'a.json')], 'JAX sees no GPU or TPU'),
                      (['--quick', '--out', str(tmp_path)], 'cannot be written')):
    completed = subprocess.run([sys.executable, SCRIPT] + argv, cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], completed.stderr
  assert os.listdir(tmp_path) == []


def _fake_time_jax(calls):
  """harness.time_jax as on a GPU where the Pallas kernel fails to lower: no compiling."""

  def fake(config, batch_np, steps, warmup, initial=None):
    impl = config.model.depthwise_impl
    calls.append(impl)
    if impl == 'pallas':
      raise RuntimeError('Pallas lowering failed: unsupported op\nsecond line of the log')
    return {'step_ms': 10.0, 'step_ms_samples': [10.0] * steps, 'flops': None,
            'compile_s': 1.0, 'xla_memory_bytes': 2**30, 'loss': 2.3}

  return fake


def test_auto_shares_its_impls_timing_and_a_failed_impl_is_a_row(tmp_path, monkeypatch):
  calls = []
  # The budget's clock starts when the module is imported, at collection: in a long session
  # the default 280 s would be spent before this test runs.
  monkeypatch.setattr(accelerator, '_START', time.perf_counter())
  monkeypatch.setattr(harness, 'time_jax', _fake_time_jax(calls))
  monkeypatch.setattr(harness, 'initial_state', lambda experiment: ('tx', 'state'))
  # What 'auto' does on a GPU today: no measured table there, so the stock 'xla' conv.
  monkeypatch.setattr(depthwise, 'resolve_impl', lambda impl, *a, **k: 'xla')
  out = tmp_path / 'fake.json'
  accelerator.main(['--quick', '--no-torch', '--models', 'convmixer_128_8_k8_p1,convmixer_1536_20',
                    '--modes', 'chans', '--impls', 'auto,xla,pallas', '--out', str(out)])
  assert calls == ['xla', 'pallas'] * 2  # 'auto' is the same program as 'xla': timed once
  payload = json.loads(out.read_text())
  rows = {(r['model'], r['impl']): r for r in payload['records']}
  assert payload['meta']['torch_rows'] == 'skipped: --no-torch'
  for model in ('convmixer_128_8_k8_p1', 'convmixer_1536_20'):
    auto, xla, pallas = (rows[model, i] for i in ('auto', 'xla', 'pallas'))
    assert (auto['status'], auto['resolved_impl'], auto['timing_shared_with']) == (
        'ok', 'xla', 'xla')
    assert xla['img_per_s'] == auto['img_per_s'] == pytest.approx(4 / 0.010)
    assert xla['mfu'] == pytest.approx(
        xla['analytic_flops'] / 0.010 / 1e12 / payload['meta']['matmul_peak_tflops']['bfloat16'])
    assert xla['memory_gib'] == 1.0 and xla['ratio_vs_timm'] is None
    assert pallas['status'] == 'error'
    assert pallas['error'] == 'RuntimeError: Pallas lowering failed: unsupported op'


def test_rows_past_the_time_budget_are_recorded_as_skipped(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(harness, 'time_jax', _fake_time_jax(calls))
  out = tmp_path / 'budget.json'
  # The clock starts when the benchmark is imported, so a 1 ms budget is already spent.
  accelerator.main(['--quick', '--no-torch', '--models', 'convmixer_768_32', '--modes',
                    'full,space', '--time-budget-s', '0.001', '--out', str(out)])
  payload = json.loads(out.read_text())
  assert calls == [] and payload['meta']['complete']
  assert [(r['mode'], r['impl'], r['status']) for r in payload['records']] == [
      (m, i, 'skipped') for m in ('full', 'space') for i in accelerator.CPU_IMPLS]
  assert all(r['skipped_because'].startswith('time budget: ') for r in payload['records'])


def test_peer_process_reports_a_failed_row_and_restarts_after_a_crash():
  th.import_timm()  # skips, saying why, without torch/timm
  peers = torch_peers.PeerProcess('cpu')
  try:
    assert peers.wait_ready()['error'] is None
    assert peers.run({'layout': 'nchw'}, timeout_s=300)['error'] == "KeyError: 'arch'"
    peers.child.kill()  # a crash between rows: the next row starts a fresh process
    peers.child.wait()
    reply = peers.run({
        'arch': dict(width=8, depth=1, kernel_size=3, patch_size=4, in_chans=3,
                     num_classes=10),
        'act': 'gelu', 'registered_name': None, 'layout': 'channels_last',
        'frozen': ['spatial'], 'batch': 2, 'image_shape': [8, 8, 3], 'steps': 1, 'warmup': 0,
        'optimizer': harness.OPTIMIZER}, timeout_s=300)
    assert reply.get('error') is None, reply
    assert _finite_positive(reply['step_ms']) and math.isfinite(reply['loss'])
    assert reply['torch_frozen_tensors'] == 2  # the depthwise kernel and bias
  finally:
    peers.close()


def _parameter_counts(experiment):
  """{collection: parameter count} of the JAX model (shapes only, nothing computed)."""
  shapes = jax.eval_shape(experiment.init_variables)
  return {c: sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))
          for c, tree in shapes.items() if c != 'batch_stats'}


@pytest.mark.parametrize('model,quick', [(name, True) for name in accelerator.MODELS] +
                         [('convmixer_768_32', False)])
def test_timm_peers_are_the_jax_models(model, quick):
  timm = th.import_timm()
  torch = th.import_torch()
  argv = ['--out', os.devnull, '--models', model] + (['--quick'] if quick else ['--allow-cpu'])
  args = accelerator.parse_args(argv)
  experiment = harness.build_experiment(accelerator.model_config(model, 'full', 'xla', args))
  mc = experiment.config.model
  arch = torch_layouts.Architecture(mc.width, mc.depth, mc.kernel_size, mc.patch_size,
                                    experiment.image_shape[-1], experiment.spec.num_classes)
  peer, built = torch_peers.timm_convmixer(torch, timm, arch, mc.act,
                                           accelerator.MODELS[model][1])
  # Full size, timm's own registered model; shrunk, timm's class with the JAX config's shape.
  assert built.startswith('timm.create_model' if not quick else 'timm ConvMixer(dim=32')
  if not quick:
    assert isinstance(peer.blocks[0][2], torch.nn.ReLU)  # 768/32 is timm's ReLU ConvMixer
  counts = _parameter_counts(experiment)
  assert sum(p.numel() for p in peer.parameters()) == sum(counts.values())
  for mode in freezing.MODES:
    frozen = freezing.frozen_collections(mode, tuple(counts))
    names = set(torch_peers.freeze(peer, arch, frozen))
    assert sum(p.numel() for n, p in peer.named_parameters() if n in names) == sum(
        counts[c] for c in frozen)
    assert all(p.requires_grad == (n not in names) for n, p in peer.named_parameters())


_TRITON_PROBE = '''
import importlib.util, sys
{first}
from benchmarks import torch_peers
torch, timm = torch_peers.import_torch_and_timm()
print(sys.modules.get('triton', 'unset'), importlib.util.find_spec('triton') is not None,
      timm is not None and hasattr(timm, 'create_model'))
'''


@pytest.mark.parametrize('tensorflow_first', [True, False])
def test_timm_imports_after_tensorflow_without_loading_triton(tensorflow_first):
  # With the CUDA build of torch (pip's default), `import tensorflow` then `import triton`
  # segfaults; timm reaches triton through torchvision and torch._dynamo. After TensorFlow,
  # triton must read as absent and timm still import; without TensorFlow nothing is hidden.
  if importlib.util.find_spec('timm') is None:
    pytest.skip('the torch extra is not installed')
  first = 'import tensorflow' if tensorflow_first else ''
  completed = subprocess.run(
      [sys.executable, '-c', _TRITON_PROBE.format(first=first)], cwd=REPO_ROOT,
      capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  triton_entry, triton_installed, timm_ok = completed.stdout.split()[-3:]
  assert timm_ok == 'True'
  if tensorflow_first:
    assert triton_entry == 'None'  # marked absent, so never loaded
  else:
    assert triton_entry != 'None'
    if triton_installed == 'False':
      assert triton_entry == 'unset'
