"""Where each tensor of a PyTorch ConvMixer lives in this package's Flax ConvMixer, and back.

Two PyTorch layouts hold the same network (Trockman & Kolter's ConvMixer):

* `timm` (timm.models.convmixer.ConvMixer): `stem.0` patch conv, `stem.2` BatchNorm, per block
  i `blocks.i.0.fn.0` depthwise conv, `blocks.i.0.fn.2` BatchNorm, `blocks.i.1` pointwise
  conv, `blocks.i.3` BatchNorm, and `head`.
* `locuslab` (convmixer.py of locuslab/convmixer: one nn.Sequential): `0`, `2`, per block
  `{3+i}.0.fn.0`, `{3+i}.0.fn.2`, `{3+i}.1`, `{3+i}.3`, and the head at `{depth+5}` (after
  the pooling and flatten modules, which hold no tensors).

`convmixer.ConvMixer` creates its modules in the same order: PatchStem_0 (collection `stem`),
BatchNorm_0, then per block DepthwiseConv_i (`spatial`), BatchNorm_{2i+1}, PointwiseConv_i
(`channel`), BatchNorm_{2i+2}, and Dense_0. Conv kernels go from torch's (out, in/groups, kh,
kw) to (kh, kw, in/groups, out), the head's (out, in) to (in, out); BatchNorm weight/bias are
`params` scale/bias and running_mean/var `batch_stats` mean/var. `num_batches_tracked` has no
Flax counterpart: it is dropped on import and set to the train step on export.

Plain numpy (no torch), so the mapping can be read and tested without the torch extra.
"""

import dataclasses
import re

import numpy as np

from spatialmix_jax.infra import errors
from spatialmix_jax.modeling import presets

LAYOUTS = ('timm', 'locuslab')

# timm's registered ConvMixers (timm/models/convmixer.py), from the preset table; locuslab
# released the same three architectures. tests/test_torch_weights.py checks them against
# timm's definitions.
TIMM_MODELS = {
    name: {k: v for k, v in presets.model_fields(name).items() if k != 'name'}
    for name in ('convmixer_1536_20', 'convmixer_768_32', 'convmixer_1024_20_ks9_p14')
}

_CONV_PERMUTATION = (2, 3, 1, 0)  # torch (out, in, kh, kw) <-> Flax (kh, kw, in, out)
_DENSE_PERMUTATION = (1, 0)


# A checkpoint that is not the expected ConvMixer; raised here and by torch_weights.py.
WeightsError = errors.WeightsError


@dataclasses.dataclass(frozen=True)
class Architecture:
  width: int
  depth: int
  kernel_size: int
  patch_size: int
  in_chans: int
  num_classes: int

  def describe(self):
    return (f'ConvMixer-{self.width}/{self.depth} (kernel {self.kernel_size}, patch '
            f'{self.patch_size}, {self.in_chans} input channels, {self.num_classes} classes)')


@dataclasses.dataclass(frozen=True)
class Slot:
  """One torch tensor and its Flax variable; `collection` None: no Flax counterpart."""
  key: str
  shape: tuple
  collection: str = None
  path: tuple = ()
  permutation: tuple = None

  def to_flax(self, array):
    array = np.asarray(array, np.float32)
    return np.transpose(array, self.permutation) if self.permutation else array

  def to_torch(self, array):
    array = np.asarray(array, np.float32)
    if not self.permutation:
      return array
    return np.transpose(array, np.argsort(self.permutation))


def parse_spec(spec, flag):
  """('timm', name) or ('locuslab', name or None) from 'timm:NAME' / 'locuslab[:NAME]'."""
  layout, _, name = spec.partition(':')
  if layout not in LAYOUTS:
    raise WeightsError(f'--{flag}={spec!r}: expected timm:NAME or locuslab[:NAME] with NAME '
                       f'one of {", ".join(sorted(TIMM_MODELS))}.')
  if layout == 'timm' and not name:
    raise WeightsError(f'--{flag}=timm needs a model name: timm:NAME with NAME one of '
                       f'{", ".join(sorted(TIMM_MODELS))}.')
  if name and name not in TIMM_MODELS:
    raise WeightsError(f'Unknown ConvMixer {name!r} in --{flag}; expected one of '
                       f'{", ".join(sorted(TIMM_MODELS))} (timm\'s registered ConvMixers).')
  return layout, name or None


def _prefixes(layout, depth):
  """Module prefixes: stem conv, stem norm, per-block [(dw, dw norm, pw, pw norm)], head."""
  if layout == 'timm':
    blocks = [(f'blocks.{i}.0.fn.0', f'blocks.{i}.0.fn.2', f'blocks.{i}.1', f'blocks.{i}.3')
              for i in range(depth)]
    return 'stem.0', 'stem.2', blocks, 'head'
  blocks = [(f'{3 + i}.0.fn.0', f'{3 + i}.0.fn.2', f'{3 + i}.1', f'{3 + i}.3')
            for i in range(depth)]
  return '0', '2', blocks, f'{depth + 5}'


def slots(layout, arch):
  """Every tensor of `layout`'s state dict for `arch`, in torch's state_dict order."""
  w, k, p = arch.width, arch.kernel_size, arch.patch_size
  stem, stem_norm, blocks, head = _prefixes(layout, arch.depth)
  bn_index = iter(range(2 * arch.depth + 1))

  def conv(prefix, shape, collection, path):
    return [Slot(f'{prefix}.weight', shape, collection, path + ('kernel',), _CONV_PERMUTATION),
            Slot(f'{prefix}.bias', (w,), collection, path + ('bias',))]

  def norm(prefix):
    module = (f'BatchNorm_{next(bn_index)}',)
    return [Slot(f'{prefix}.weight', (w,), 'params', module + ('scale',)),
            Slot(f'{prefix}.bias', (w,), 'params', module + ('bias',)),
            Slot(f'{prefix}.running_mean', (w,), 'batch_stats', module + ('mean',)),
            Slot(f'{prefix}.running_var', (w,), 'batch_stats', module + ('var',)),
            Slot(f'{prefix}.num_batches_tracked', ())]

  table = conv(stem, (w, arch.in_chans, p, p), 'stem', ('PatchStem_0', 'conv')) + norm(stem_norm)
  for i, (depthwise, depthwise_norm, pointwise, pointwise_norm) in enumerate(blocks):
    table += conv(depthwise, (w, 1, k, k), 'spatial', (f'DepthwiseConv_{i}',))
    table += norm(depthwise_norm)
    table += conv(pointwise, (w, w, 1, 1), 'channel', (f'PointwiseConv_{i}',))
    table += norm(pointwise_norm)
  return table + [
      Slot(f'{head}.weight', (arch.num_classes, w), 'params', ('Dense_0', 'kernel'),
           _DENSE_PERMUTATION),
      Slot(f'{head}.bias', (arch.num_classes,), 'params', ('Dense_0', 'bias'))]


def _shape(array):
  return tuple(int(d) for d in np.shape(array))


def _require_tensor(state_dict, key, layout, ndim):
  if key not in state_dict:
    first = next(iter(state_dict), None)
    seen = f"its first tensor is {first!r}" if first is not None else 'it holds no tensors'
    raise WeightsError(f'Not a {layout} ConvMixer state dict: no tensor {key!r} ({seen}).')
  shape = _shape(state_dict[key])
  if len(shape) != ndim:
    raise WeightsError(f'Not a {layout} ConvMixer state dict: tensor {key!r} has shape {shape}, '
                       f'expected {ndim} dimensions.')
  return shape


def read_architecture(state_dict, layout):
  """The Architecture the tensors describe (width, depth, kernel, patch, channels, classes)."""
  stem, _, _, _ = _prefixes(layout, 0)
  for other in LAYOUTS:
    if other != layout and f'{_prefixes(other, 0)[0]}.weight' in state_dict and (
        f'{stem}.weight' not in state_dict):
      raise WeightsError(f'Not a {layout} ConvMixer state dict: its tensors are named as in '
                         f'the {other} layout ({_prefixes(other, 0)[0]}.weight); pass '
                         f'--source={other}{":NAME" if other == "timm" else ""}.')
  width, in_chans, patch, patch_w = _require_tensor(state_dict, f'{stem}.weight', layout, 4)
  if patch != patch_w:
    raise WeightsError(f'Tensor {stem + ".weight"!r} has a non-square patch {patch}x{patch_w}; '
                       'a ConvMixer stem is square.')
  pointwise = re.compile(r'^blocks\.(\d+)\.1\.weight$' if layout == 'timm' else
                         r'^(\d+)\.1\.weight$')
  indices = sorted(int(m.group(1)) for m in map(pointwise.match, state_dict) if m)
  first_block = 0 if layout == 'timm' else 3
  depth = 0
  while first_block + depth in indices:  # blocks are numbered without gaps
    depth += 1
  if depth == 0:
    block_key = _prefixes(layout, 1)[2][0][2] + '.weight'
    raise WeightsError(f'Not a {layout} ConvMixer state dict: no mixer blocks (no tensor '
                       f'{block_key!r}).')
  _, _, blocks, head = _prefixes(layout, depth)
  kernel = _require_tensor(state_dict, f'{blocks[0][0]}.weight', layout, 4)[-1]
  num_classes = _require_tensor(state_dict, f'{head}.weight', layout, 2)[0]
  return Architecture(width, depth, kernel, patch, in_chans, num_classes)


def check_state_dict(state_dict, layout, arch):
  """A WeightsError naming the first unknown, misshapen or missing tensor, if there is one."""
  table = {slot.key: slot for slot in slots(layout, arch)}
  for key, value in state_dict.items():
    slot = table.get(key)
    if slot is None:
      raise WeightsError(f'Unexpected tensor {key!r} (shape {_shape(value)}) for a {layout} '
                         f'{arch.describe()}.')
    if _shape(value) != slot.shape:
      raise WeightsError(f'Tensor {key!r} has shape {_shape(value)}, expected {slot.shape} '
                         f'for a {layout} {arch.describe()}.')
    if slot.collection and not np.issubdtype(np.asarray(value).dtype, np.floating):
      raise WeightsError(f'Tensor {key!r} has dtype {np.asarray(value).dtype}; expected '
                         'floating-point weights.')
  for slot in table.values():
    # Old PyTorch checkpoints lack num_batches_tracked, and nothing here reads it.
    if slot.key not in state_dict and slot.collection:
      raise WeightsError(f'Missing tensor {slot.key!r} (shape {slot.shape}) of a {layout} '
                         f'{arch.describe()}.')


def check_named_model(arch, act, name, flag):
  """A WeightsError unless `arch` and `act` are those of timm's model `name`."""
  expected = TIMM_MODELS[name]
  found = dict(width=arch.width, depth=arch.depth, kernel_size=arch.kernel_size,
               patch_size=arch.patch_size, act=act)
  differing = [f'{field} {found[field]} (expected {value})' for field, value in expected.items()
               if found[field] != value]
  if differing:
    raise WeightsError(f'{name} (from --{flag}) is not this model: it has '
                       f'{", ".join(differing)}.')


def to_flax(state_dict, layout):
  """(Architecture, {collection: tree} of float32 numpy arrays) from a checked state dict."""
  arch = read_architecture(state_dict, layout)
  check_state_dict(state_dict, layout, arch)
  variables = {}
  for slot in slots(layout, arch):
    if slot.collection is None:
      continue
    node = variables.setdefault(slot.collection, {})
    for name in slot.path[:-1]:
      node = node.setdefault(name, {})
    node[slot.path[-1]] = slot.to_flax(state_dict[slot.key])
  return arch, variables


def _flax_leaf(variables, slot):
  node = variables.get(slot.collection, {})
  for name in slot.path:
    if not isinstance(node, dict) or name not in node:
      raise WeightsError(f'The Flax variables lack {slot.collection}/{"/".join(slot.path)}, '
                         f'needed for tensor {slot.key!r}.')
    node = node[name]
  return node


def _flax_paths(tree, prefix=()):
  if not isinstance(tree, dict):
    return [prefix]
  return [p for name, child in tree.items() for p in _flax_paths(child, prefix + (name,))]


def from_flax(variables, layout, arch, num_batches_tracked=0):
  """{torch key: numpy array} in torch's state_dict order, from Flax variables of `arch`."""
  table = slots(layout, arch)
  used = {(slot.collection,) + slot.path for slot in table if slot.collection}
  for path in _flax_paths(variables):
    if path not in used:
      raise WeightsError(f'Flax variable {"/".join(path)} has no place in a {layout} '
                         f'{arch.describe()}.')
  state_dict = {}
  for slot in table:
    if slot.collection is None:
      state_dict[slot.key] = np.asarray(num_batches_tracked, np.int64)
      continue
    array = slot.to_torch(_flax_leaf(variables, slot))
    if _shape(array) != slot.shape:
      raise WeightsError(f'{slot.collection}/{"/".join(slot.path)} would give tensor '
                         f'{slot.key!r} shape {_shape(array)}, expected {slot.shape} for a '
                         f'{layout} {arch.describe()}.')
    state_dict[slot.key] = np.ascontiguousarray(array)
  return state_dict
