"""PyTorch twins of the benchmarked JAX models, for like-for-like train-step timings.

`create_model(config.model, ...)` mirrors `spatialmix_jax.modeling.models.create_model` for the two
model families that `benchmarks/throughput.py` times: `convmixer` and `sep_resnet_cifar`.
Layer for layer they compute what the Linen models compute:

* 'SAME' padding as lax pads it (for even kernels or stride 2 the extra row/column goes at
  the end; `Depthwise` pads explicitly when the padding is asymmetric).
* Input normalisation inside the model; exact GELU; BatchNorm momentum 0.1, eps 1e-5.
* PyTorch's default init, which is the JAX models' `init_scheme='torch'`: weights and
  biases U(±1/sqrt(fan_in)), BatchNorm scale 1 and offset 0.

Each parameter belongs to the collection its JAX counterpart lives in (`collection_of`):
depthwise convs to `spatial`, pointwise convs to `channel`, the ConvMixer patch stem to
`stem`, BatchNorm and the head to `params`. `freeze(model, mode)` sets requires_grad=False
on the collections that `spatialmix_jax.modeling.freezing` freezes for that mode, so autograd skips
their weight gradients just as the JAX step never differentiates frozen collections.

`load_jax_variables` copies a Linen model's variables in, so tests can check that both
frameworks compute the same function.
"""

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from spatialmix_jax.modeling import freezing

MODEL_NAMES = ('convmixer', 'sep_resnet_cifar')
COLLECTIONS = ('channel', 'params', 'spatial', 'stem')


def _same_pads(size, k, stride):
  """(low, high) padding of lax 'SAME' along one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return total // 2, total - total // 2


def _batch_norm(channels):
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class Depthwise(nn.Conv2d):
  """Depthwise conv C -> C * multiplier with lax 'SAME' padding (collection `spatial`)."""

  def __init__(self, channels, multiplier, kernel_size, stride=1, bias=True):
    super().__init__(channels, channels * multiplier, kernel_size, stride=stride,
                     groups=channels, bias=bias)

  def forward(self, x):
    k, s = self.kernel_size[0], self.stride[0]
    pad_h, pad_w = _same_pads(x.shape[2], k, s), _same_pads(x.shape[3], k, s)
    if pad_h[0] == pad_h[1] and pad_w[0] == pad_w[1]:
      return F.conv2d(x, self.weight, self.bias, s, (pad_h[0], pad_w[0]), 1, self.groups)
    return F.conv2d(F.pad(x, (*pad_w, *pad_h)), self.weight, self.bias, s, 0, 1, self.groups)


class Pointwise(nn.Conv2d):
  """1x1 conv (collection `channel`); a strided one reads pixels at multiples of the stride."""

  def __init__(self, in_channels, out_channels, stride=1, bias=True):
    super().__init__(in_channels, out_channels, 1, stride=stride, bias=bias)


class PatchStem(nn.Conv2d):
  """ConvMixer patch embedding, kernel = stride = patch (collection `stem`)."""

  def __init__(self, in_channels, width, patch_size):
    super().__init__(in_channels, width, patch_size, stride=patch_size, bias=True)


def collection_of(module):
  if isinstance(module, Depthwise):
    return 'spatial'
  if isinstance(module, Pointwise):
    return 'channel'
  if isinstance(module, PatchStem):
    return 'stem'
  return 'params'


class _Normalize(nn.Module):

  def __init__(self, mean, std):
    super().__init__()
    self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
    self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

  def forward(self, x):
    return (x - self.mean) / self.std


class ConvMixer(nn.Module):
  """NCHW (channels_last is fine) images in [0, 1] -> logits."""

  def __init__(self, width, depth, kernel_size, patch_size, num_classes, num_channels, mean,
               std, act='gelu'):
    super().__init__()
    if act not in ('gelu', 'relu'):
      raise ValueError(f"Unknown act {act!r}; choose one of ('gelu', 'relu').")
    self.act = F.gelu if act == 'gelu' else F.relu
    self.normalize = _Normalize(mean, std)
    self.stem = PatchStem(num_channels, width, patch_size)
    self.stem_norm = _batch_norm(width)
    self.depthwise = nn.ModuleList(
        Depthwise(width, 1, kernel_size) for _ in range(depth))
    self.depthwise_norm = nn.ModuleList(_batch_norm(width) for _ in range(depth))
    self.pointwise = nn.ModuleList(Pointwise(width, width) for _ in range(depth))
    self.pointwise_norm = nn.ModuleList(_batch_norm(width) for _ in range(depth))
    self.head = nn.Linear(width, num_classes)

  def forward(self, x):
    x = self.stem_norm(self.act(self.stem(self.normalize(x))))
    for dw, dw_norm, pw, pw_norm in zip(self.depthwise, self.depthwise_norm, self.pointwise,
                                        self.pointwise_norm):
      x = x + dw_norm(self.act(dw(x)))
      x = pw_norm(self.act(pw(x)))
    return self.head(x.mean(dim=(2, 3)))

  def jax_order(self):
    """(Linen module type, torch module) pairs in the Linen model's creation order."""
    order = [('PatchStem', self.stem), ('BatchNorm', self.stem_norm)]
    for i in range(len(self.depthwise)):
      order += [('DepthwiseConv', self.depthwise[i]), ('BatchNorm', self.depthwise_norm[i]),
                ('PointwiseConv', self.pointwise[i]), ('BatchNorm', self.pointwise_norm[i])]
    return order + [('Dense', self.head)]


class SeparableConv(nn.Module):

  def __init__(self, in_channels, out_channels, kernel_size, stride, multiplier):
    super().__init__()
    self.depthwise = Depthwise(in_channels, multiplier, kernel_size, stride, bias=False)
    self.pointwise = Pointwise(in_channels * multiplier, out_channels, bias=False)

  def forward(self, x):
    return self.pointwise(self.depthwise(x))


class _PreActBlock(nn.Module):

  def __init__(self, in_channels, width, kernel_size, stride, multiplier):
    super().__init__()
    self.norm1 = _batch_norm(in_channels)
    self.shortcut = (Pointwise(in_channels, width, stride, bias=False)
                     if stride != 1 or in_channels != width else None)
    self.conv1 = SeparableConv(in_channels, width, kernel_size, stride, multiplier)
    self.norm2 = _batch_norm(width)
    self.conv2 = SeparableConv(width, width, kernel_size, 1, multiplier)

  def forward(self, x):
    pre = F.relu(self.norm1(x))
    skip = x if self.shortcut is None else self.shortcut(pre)
    return skip + self.conv2(F.relu(self.norm2(self.conv1(pre))))


class SepPreActResNet(nn.Module):
  """CIFAR separable pre-activation ResNet (depth 6n+2), as `resnet.PreActResNet`."""
  widths = (16, 32, 64)

  def __init__(self, depth, num_classes, num_channels, mean, std, kernel_size=3,
               multiplier=9, width_multiplier=1):
    super().__init__()
    if depth < 8 or (depth - 2) % 6:
      raise ValueError(f'CIFAR ResNet depth must be 6n+2 (8, 14, 20, ...), got {depth}.')
    n = (depth - 2) // 6
    widths = [w * width_multiplier for w in self.widths]
    self.normalize = _Normalize(mean, std)
    self.stem = SeparableConv(num_channels, widths[0], kernel_size, 1, multiplier)
    blocks, channels = [], widths[0]
    for stage, width in enumerate(widths):
      for block in range(n):
        stride = 2 if stage > 0 and block == 0 else 1
        blocks.append(_PreActBlock(channels, width, kernel_size, stride, multiplier))
        channels = width
    self.blocks = nn.ModuleList(blocks)
    self.norm = _batch_norm(channels)
    self.head = nn.Linear(channels, num_classes)

  def forward(self, x):
    x = self.stem(self.normalize(x))
    for block in self.blocks:
      x = block(x)
    return self.head(F.relu(self.norm(x)).mean(dim=(2, 3)))

  def jax_order(self):
    order = [('SeparableConv', self.stem)]
    for b in self.blocks:
      order.append(('BatchNorm', b.norm1))
      if b.shortcut is not None:
        order.append(('PointwiseConv', b.shortcut))
      order += [('SeparableConv', b.conv1), ('BatchNorm', b.norm2), ('SeparableConv', b.conv2)]
    return order + [('BatchNorm', self.norm), ('Dense', self.head)]


def create_model(model_config, *, num_classes, num_channels, mean, std):
  """The PyTorch twin of `models.create_model(model_config, ...)` (float32, NCHW)."""
  mc = model_config
  if mc.name not in MODEL_NAMES:
    raise ValueError(f'No PyTorch twin of model {mc.name!r}; choose one of {MODEL_NAMES}.')
  if mc.init_scheme != 'torch' or mc.spatial_init != 'random':
    raise ValueError("PyTorch twins use PyTorch's default init: set model.init_scheme='torch' and "
                     "model.spatial_init='random'.")
  if mc.name == 'convmixer':
    return ConvMixer(mc.width, mc.depth, mc.kernel_size, mc.patch_size, num_classes,
                     num_channels, mean, std, mc.act)
  return SepPreActResNet(mc.depth, num_classes, num_channels, mean, std, mc.kernel_size,
                         mc.depth_multiplier, mc.width_multiplier)


def _parameters_by_collection(model):
  for module in model.modules():
    collection = collection_of(module)
    for p in module.parameters(recurse=False):
      yield collection, p


def freeze(model, mode):
  """Freezes (requires_grad=False) what `mode` freezes in JAX; returns the frozen names."""
  frozen = freezing.frozen_collections(mode, COLLECTIONS)
  for collection, p in _parameters_by_collection(model):
    p.requires_grad_(collection not in frozen)
  return frozen


def parameter_report(model):
  """{'trainable', 'frozen', 'per_collection'} like `freezing.parameter_report`."""
  per_collection, trainable = {}, 0
  for collection, p in _parameters_by_collection(model):
    per_collection[collection] = per_collection.get(collection, 0) + p.numel()
    trainable += p.numel() if p.requires_grad else 0
  return {'trainable': trainable, 'frozen': sum(per_collection.values()) - trainable,
          'per_collection': per_collection}


def _by_type(tree):
  """{'Type': [subtree of Type_0, Type_1, ...]} of one collection's top-level modules."""
  groups = {}
  for name in tree:
    kind, index = name.rsplit('_', 1)
    groups.setdefault(kind, {})[int(index)] = tree[name]
  return {kind: [items[i] for i in sorted(items)] for kind, items in groups.items()}


def _set(param, value):
  with torch.no_grad():
    param.copy_(torch.from_numpy(np.asarray(value, np.float32).copy()))


def _load_conv(conv, collection_tree):
  """HWIO (k, k, C_in/groups, C_out) kernel -> OIHW weight, and the bias if any."""
  _set(conv.weight, np.transpose(np.asarray(collection_tree['kernel']), (3, 2, 0, 1)))
  if conv.bias is not None:
    _set(conv.bias, collection_tree['bias'])


def load_jax_variables(model, variables):
  """Copies a Linen model's variables ({collection: tree}) into this PyTorch twin."""
  trees = {c: _by_type(t) for c, t in variables.items()}
  seen = {}

  def subtree(collection, kind):
    return trees[collection][kind][seen[kind]]

  for kind, module in model.jax_order():
    seen[kind] = seen.get(kind, -1) + 1
    if kind == 'BatchNorm':
      _set(module.weight, subtree('params', kind)['scale'])
      _set(module.bias, subtree('params', kind)['bias'])
      _set(module.running_mean, subtree('batch_stats', kind)['mean'])
      _set(module.running_var, subtree('batch_stats', kind)['var'])
    elif kind == 'Dense':
      _set(module.weight, np.asarray(subtree('params', kind)['kernel']).T)
      _set(module.bias, subtree('params', kind)['bias'])
    elif kind == 'PatchStem':
      _load_conv(module, subtree('stem', kind)['conv'])
    elif kind == 'DepthwiseConv':
      _load_conv(module, subtree('spatial', kind))
    elif kind == 'PointwiseConv':
      _load_conv(module, subtree('channel', kind))
    else:  # SeparableConv: its depthwise half in `spatial`, pointwise half in `channel`
      _load_conv(module.depthwise, subtree('spatial', kind)['depthwise'])
      _load_conv(module.pointwise, subtree('channel', kind)['pointwise'])
