"""The accelerator benchmark's PyTorch peer rows: timm's ConvMixers trained with AMP, timed
like the JAX step, in a child process of their own.

Why a child process: torch and jaxlib each bring their own CUDA libraries (cuDNN, cuBLAS),
often of different versions. In one process whichever loads first is used by both, and JAX
then fails its cuDNN version check or falls back to CPU (jax-ml/jax#18032, #19004). Apart,
each also keeps its own memory pool, and a CUDA error in one leaves the other running. The
benchmark (`accelerator.py`) starts `PeerProcess`, which runs this file with `--serve`; it
answers one JSON request per row on stdin with one JSON line on stdout. The child imports
torch, timm and numpy, never JAX.

Each peer is timm's own `ConvMixer`: `timm.create_model(NAME)` when the architecture is one
of timm's registered ConvMixers (`torch_layouts.TIMM_MODELS`), else timm's `ConvMixer` class
with the JAX config's width, depth, kernel, patch and activation (the paper's CIFAR model, and
the tiny `--quick` models). Its parameters are frozen by the collection their Flax
counterparts live in (`torch_layouts.slots`), so a frozen mode skips the same weight
gradients in both frameworks. The step is AdamW under bf16 autocast, on channels_last or
plain NCHW tensors. timm's models take normalised images; the JAX models normalise inside,
which costs one elementwise op and is left in.
"""

import gc
import glob
import importlib.util
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

if __name__ == '__main__':  # the child: this file is run as a script
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spatialmix_jax.interop import torch_layouts  # pylint: disable=g-import-not-at-top,wrong-import-position

LAYOUTS = ('channels_last', 'nchw')
_REPLY = '@@peer '  # marks the child's answers among anything else a library prints
_DECLARED = []  # op definitions live as long as their torch.library.Library object


def declare_torchvision_ops_if_unloadable(torch):
  """Lets torchvision (which timm imports) load when its C++ ops cannot.

  pip can only get the CUDA build of torchvision from the registries, and on a machine with
  the CPU build of torch its ops library fails to load (it links libtorch_cuda).
  torchvision then still registers fake kernels for `torchvision::nms` and `qnms` at import
  and fails because those ops do not exist. Declaring the two schemas first lets it import
  with its ops unavailable, which is how it treats a missing extension; no ConvMixer calls
  them. Where the library loads (a CUDA machine with a matching torchvision) nothing is
  declared.
  """
  spec = importlib.util.find_spec('torchvision')
  if spec is None:
    return
  libraries = glob.glob(os.path.join(os.path.dirname(spec.origin), '_C*.so'))
  try:
    if libraries:
      torch.ops.load_library(libraries[0])
      return
  except OSError:
    pass
  if hasattr(torch.ops.torchvision, 'nms'):
    return
  library = torch.library.Library('torchvision', 'DEF')
  library.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
  library.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
  _DECLARED.append(library)


def hide_triton_if_tensorflow_loaded():
  """Makes torch see no triton in a process that has already imported TensorFlow.

  The CUDA build of torch, which pip installs from the registries by default, brings triton,
  and loading triton's native library after TensorFlow's crashes the process (segfault in
  `import triton`; the other order works). torch imports triton lazily, from
  `torch._dynamo`, which torchvision and so timm import. A process with TensorFlow loaded
  (the tests, the loop benchmark) runs its PyTorch peers eagerly on the CPU and never needs
  triton, so it is marked absent there; torch then treats it as not installed.
  """
  if 'tensorflow' in sys.modules and 'triton' not in sys.modules:
    sys.modules['triton'] = None


def prepare_timm_import(torch):
  """Both workarounds above, in the order timm needs them; call before `import timm`."""
  hide_triton_if_tensorflow_loaded()
  declare_torchvision_ops_if_unloadable(torch)


def one_line(error):
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0] if text else ""}'[:300]


def import_torch_and_timm():
  """(torch, timm), or (None, reason) when either cannot be imported here."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return None, f'torch is not importable ({e})'
  try:
    prepare_timm_import(torch)
    import timm  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except
    # timm fails in many ways (a missing or mismatched torchvision raises RuntimeError).
    return None, f'timm is not importable ({one_line(e)})'
  return torch, timm


def timm_convmixer(torch, timm, arch, act, registered_name=None):
  """(timm ConvMixer of `arch`, how it was built): the registered model when it is that."""
  registered = torch_layouts.TIMM_MODELS.get(registered_name)
  if registered and arch.num_classes == 1000 and arch.in_chans == 3 and registered == dict(
      width=arch.width, depth=arch.depth, kernel_size=arch.kernel_size,
      patch_size=arch.patch_size, act=act):
    return timm.create_model(registered_name), f"timm.create_model('{registered_name}')"
  from timm.models.convmixer import ConvMixer  # pylint: disable=g-import-not-at-top
  model = ConvMixer(dim=arch.width, depth=arch.depth, kernel_size=arch.kernel_size,
                    patch_size=arch.patch_size, in_chans=arch.in_chans,
                    num_classes=arch.num_classes,
                    act_layer=torch.nn.ReLU if act == 'relu' else torch.nn.GELU)
  return model, (f'timm ConvMixer(dim={arch.width}, depth={arch.depth}, kernel_size='
                 f'{arch.kernel_size}, patch_size={arch.patch_size}, act={act})')


def freeze(model, arch, frozen_collections):
  """requires_grad=False on the parameters in `frozen_collections`; their names."""
  collection_of = {slot.key: slot.collection for slot in torch_layouts.slots('timm', arch)}
  names = []
  for name, parameter in model.named_parameters():
    if name not in collection_of:
      raise ValueError(f'timm ConvMixer parameter {name!r} is not in torch_layouts.slots: '
                       'the timm layout changed; update torch_layouts.')
    parameter.requires_grad_(collection_of[name] not in frozen_collections)
    if collection_of[name] in frozen_collections:
      names.append(name)
  return names


def synthetic_batch(batch, image_shape, num_classes):
  """The benchmark's fixed random batch (NHWC images in [0, 1]); the same in both processes."""
  rng = np.random.default_rng(0)
  return {'image': rng.random((batch,) + tuple(image_shape), dtype=np.float32),
          'label': rng.integers(0, num_classes, (batch,), np.int32)}


def time_row(torch, timm, request, device):
  """One peer row: build, freeze and time timm's model as `request` describes."""
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  arch = torch_layouts.Architecture(**request['arch'])
  torch.manual_seed(0)
  model, built = timm_convmixer(torch, timm, arch, request['act'], request['registered_name'])
  frozen = freeze(model, arch, request['frozen'])
  memory_format = (torch.channels_last if request['layout'] == 'channels_last' else
                   torch.contiguous_format)
  model = model.to(device, memory_format=memory_format).train()
  settings = request['optimizer']
  optimizer = torch.optim.AdamW(
      [p for p in model.parameters() if p.requires_grad], lr=settings['learning_rate'],
      betas=(settings['b1'], settings['b2']), eps=settings['eps'],
      weight_decay=settings['weight_decay'])
  batch_np = synthetic_batch(request['batch'], request['image_shape'], arch.num_classes)
  # NHWC numpy -> NCHW tensor; channels_last keeps NHWC strides under the NCHW shape.
  x = torch.from_numpy(batch_np['image']).permute(0, 3, 1, 2).to(device).contiguous(
      memory_format=memory_format)
  y = torch.from_numpy(batch_np['label'].astype(np.int64)).to(device)
  cuda = device.type == 'cuda'
  if cuda:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
      loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    if cuda:
      torch.cuda.synchronize()
    return loss

  # Step 0 allocates and, with cudnn.benchmark, picks conv algorithms: reported on its own.
  times, loss = [], None
  for _ in range(max(request['warmup'], 1) + request['steps']):
    start = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - start)
  samples = [t * 1e3 for t in times[-request['steps']:]]
  return {'step_ms': statistics.median(samples), 'step_ms_samples': samples,
          'compile_s': times[0], 'loss': float(loss.detach().float().item()),
          'memory_bytes': int(torch.cuda.max_memory_allocated(device)) if cuda else None,
          'torch_model': built, 'torch_frozen_tensors': len(frozen)}


def _send(message):
  print(_REPLY + json.dumps(message), flush=True)


def serve(device_type):
  """The child's loop: a hello (versions, or why there can be no rows), then a reply per row."""
  torch, timm = import_torch_and_timm()
  if torch is None:
    _send({'error': timm})
    return
  if device_type == 'cuda' and not torch.cuda.is_available():
    _send({'error': f'this torch ({torch.__version__}) sees no CUDA device'})
    return
  if device_type == 'cuda':
    torch.backends.cudnn.benchmark = True  # as timm's train.py sets it
  else:
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores XLA:CPU may use too
  device = torch.device(device_type)
  _send({'error': None, 'torch': torch.__version__, 'timm': timm.__version__,
         'torch_cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(),
         'device': torch.cuda.get_device_name(0) if device_type == 'cuda' else 'cpu'})
  for line in sys.stdin:
    poisoned = False
    try:
      reply = time_row(torch, timm, json.loads(line), device)
    except torch.cuda.OutOfMemoryError as e:
      reply = {'error': one_line(e)}  # the next, smaller row may still fit
    except Exception as e:  # pylint: disable=broad-except
      reply = {'error': one_line(e)}
      # A CUDA error can leave the context unusable: the next row gets a fresh process.
      poisoned = device_type == 'cuda'
    gc.collect()
    if device_type == 'cuda' and not poisoned:
      torch.cuda.empty_cache()  # hands the blocks back, for the JAX rows that follow
    _send({**reply, 'exiting': poisoned})
    if poisoned:
      return


class PeerProcess:
  """The parent's handle on the child: `run(request)` -> its reply; restarted after a crash."""

  def __init__(self, device_type, start_timeout_s=300):
    """Starts the child, which imports torch while the caller goes on; `wait_ready` joins."""
    self.device_type, self.start_timeout_s = device_type, start_timeout_s
    self.child = self.replies = self.info = None
    self._spawn()

  def _spawn(self):
    self.child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), '--serve', self.device_type],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    self.replies = queue.Queue()
    threading.Thread(target=self._read, args=(self.child, self.replies), daemon=True).start()

  def wait_ready(self):
    """The child's hello: versions and device, or {'error': why it cannot run rows}."""
    if self.info is None:
      self.info = self._reply(self.start_timeout_s, 'starting')
    return self.info

  def _start(self):
    self._spawn()
    self.info = None
    return self.wait_ready()

  @staticmethod
  def _read(child, replies):
    for line in child.stdout:
      if line.startswith(_REPLY):
        replies.put(json.loads(line[len(_REPLY):]))
      else:
        sys.stderr.write(line)  # a library's own output: pass it on
    replies.put(None)  # the child exited

  def _reply(self, timeout_s, doing):
    try:
      reply = self.replies.get(timeout=timeout_s)
    except queue.Empty:
      self.child.kill()  # hung (a stuck kernel, say): the next row gets a fresh process
      self.child.wait()
      self.child = None
      return {'error': f'the PyTorch process gave no answer in {timeout_s:.0f} s ({doing})'}
    if reply is None:
      code = self.child.wait()
      self.child = None
      return {'error': f'the PyTorch process exited with code {code} ({doing})'}
    if reply.pop('exiting', False):  # it quit after this reply: restart it for the next row
      self.child.wait()
      self.child = None
    return reply

  def run(self, request, timeout_s):
    if self.child is not None and self.child.poll() is not None:  # died between rows
      self.child = None
    if self.child is None:
      info = self._start()
      if info.get('error'):
        return info
    try:
      self.child.stdin.write(json.dumps(request) + '\n')
      self.child.stdin.flush()
    except OSError:  # it died since its last reply; _reply reports how
      pass
    return self._reply(timeout_s, f"{request['layout']} row")

  def close(self):
    if self.child is None:
      return
    try:
      self.child.stdin.close()
      self.child.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
      self.child.kill()
      self.child.wait()
    self.child = None


if __name__ == '__main__':
  if sys.argv[1:2] != ['--serve'] or sys.argv[2:] not in (['cpu'], ['cuda']):
    print('error: usage: torch_peers.py --serve cpu|cuda (started by accelerator.py)',
          file=sys.stderr)
    sys.exit(2)
  serve(sys.argv[2])
