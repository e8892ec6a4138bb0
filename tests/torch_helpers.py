"""PyTorch-side helpers of tests/test_torch_weights.py: timm (or a skip), a locuslab-layout
ConvMixer, random BatchNorm statistics, and logits of either framework on the same images."""

import copy
import functools
import importlib.util

import numpy as np
import pytest

from benchmarks import torch_peers

EXTRA_HINT = 'the torch extra is not installed (pip install -e ".[torch]")'


def import_torch():
  return pytest.importorskip('torch', reason=EXTRA_HINT)


def import_timm():
  torch = import_torch()
  if importlib.util.find_spec('timm') is None:
    pytest.skip(EXTRA_HINT)
  torch_peers.prepare_timm_import(torch)  # the benchmark's workarounds; see their docstrings
  import timm  # pylint: disable=g-import-not-at-top
  return timm


def locuslab_convmixer(dim, depth, kernel_size=9, patch_size=7, n_classes=1000, in_chans=3):
  """The module layout of locuslab/convmixer's convmixer.py: one nn.Sequential, GELU, a
  Residual wrapper around each depthwise conv (written here from that layout; `in_chans`
  added so that one-channel digits fit)."""
  torch = import_torch()
  nn = torch.nn

  class Residual(nn.Module):

    def __init__(self, fn):
      super().__init__()
      self.fn = fn

    def forward(self, x):
      return self.fn(x) + x

  def block():
    depthwise = nn.Sequential(nn.Conv2d(dim, dim, kernel_size, groups=dim, padding='same'),
                              nn.GELU(), nn.BatchNorm2d(dim))
    return nn.Sequential(Residual(depthwise), nn.Conv2d(dim, dim, kernel_size=1), nn.GELU(),
                         nn.BatchNorm2d(dim))

  return nn.Sequential(
      nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size), nn.GELU(),
      nn.BatchNorm2d(dim), *[block() for _ in range(depth)], nn.AdaptiveAvgPool2d((1, 1)),
      nn.Flatten(), nn.Linear(dim, n_classes))


def randomise(model, input_shape, seed=0):
  """`model` in eval mode with random BatchNorm affine parameters, random running statistics
  and a random head whose logits spread like a trained classifier's.

  Each BatchNorm's running statistics are those of its input on random images (NCHW
  `input_shape`: give it some 500 patches or more, as noisier statistics blow up over 32
  blocks on other images), moved at random: the mean by up to 0.2 std, the variance by a factor 0.7 to
  1.4. They are set layer by layer in one eval-mode pass, so each layer's statistics are
  drawn around what the already randomised layers before it produce. Statistics drawn with
  no regard to the activations would let BatchNorm's constant terms drown the image's signal
  within a few blocks (logits that hardly depend on the image, or on where a kernel went);
  perturbing statistics calibrated all at once would compound over 32 blocks instead.
  """
  torch = import_torch()
  generator = torch.Generator().manual_seed(seed)

  def uniform(shape, low, high):
    return torch.rand(shape, generator=generator) * (high - low) + low

  def draw_statistics(norm, inputs):
    x = inputs[0]
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))
    # A floor for channels that the calibration images barely excite (a ReLU that is almost
    # always off): their variance would be ~0, and 1/sqrt of it amplifies any other image.
    var = torch.maximum(var, 0.1 * var.mean())
    norm.running_mean.copy_(mean + uniform(mean.shape, -0.2, 0.2) * var.sqrt())
    norm.running_var.copy_(var * uniform(var.shape, 0.7, 1.4))
    norm.num_batches_tracked.fill_(7)

  norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for norm in norms:
      norm.weight.copy_(uniform(norm.weight.shape, 0.5, 1.5))
      norm.bias.copy_(uniform(norm.bias.shape, -0.5, 0.5))
    for module in model.modules():
      if isinstance(module, torch.nn.Linear):
        bound = 3.0 / module.in_features ** 0.5  # 3x PyTorch's init: logits of a few units
        module.weight.copy_(uniform(module.weight.shape, -bound, bound))
    hooks = [norm.register_forward_pre_hook(draw_statistics) for norm in norms]
    model.eval()(uniform(input_shape, -2.0, 2.0))
    for hook in hooks:
      hook.remove()
  return model


# The NCHW images each timm model's BatchNorm statistics are drawn on: about 500 patches
# (2x2 at the test inputs' 14 and 28 pixels, four times larger here).
TIMM_CALIBRATION_SHAPES = {'convmixer_768_32': (8, 3, 56, 56),
                           'convmixer_1536_20': (8, 3, 56, 56),
                           'convmixer_1024_20_ks9_p14': (8, 3, 112, 112)}


@functools.cache
def randomised_timm_model(name):
  """timm's `name`, randomised (`randomise`, seed 0), built once per test session: drawing
  20-50M weights and calibrating 20-32 BatchNorms takes seconds per model. Shared: use it
  read-only (`emptied_copy` for a model to load weights into)."""
  timm = import_timm()
  return randomise(timm.create_model(name, pretrained=False), TIMM_CALIBRATION_SHAPES[name])


def emptied_copy(model):
  """A copy of `model` with every tensor of its state dict zeroed: whatever it computes after
  a strict load came from the loaded file, none from `model`."""
  torch = import_torch()
  fresh = copy.deepcopy(model)
  with torch.no_grad():
    for tensor in fresh.state_dict().values():
      tensor.zero_()
  return fresh


def state_dict_arrays(model):
  return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def torch_logits(model, images, mean, std):
  """Logits of `model` on NHWC images in [0, 1], normalised as its data pipeline would."""
  torch = import_torch()
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
  with torch.no_grad():
    return model.eval()(x.float()).numpy()


def load_strictly(model, path):
  """`model` with the state dict saved at `path`, loaded with strict=True."""
  torch = import_torch()
  model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True), strict=True)
  return model.eval()


def save(obj, path):
  """torch.save, or safetensors for a .safetensors path; returns the path."""
  torch = import_torch()
  if str(path).endswith('.safetensors'):
    from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
    save_file({key: value.contiguous() for key, value in obj.items()}, str(path))
  else:
    torch.save(obj, path)
  return str(path)


def random_images(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)
