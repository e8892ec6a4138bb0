"""The analytic FLOP count of a train step, layer by layer (benchmarks' `GF an` column).

Analytic count: a conv or dense layer with M multiply-adds in its forward pass (for a conv,
M = N·H_out·W_out·C_out·(C_in/groups)·k², padded taps included) costs 2M FLOPs forward,
2M for its input gradient when any trainable weight lies before it (so never for the layer
reading the image) and 2M for its weight gradient when its collection is trainable. Frozen
modes thus save the weight gradients of the frozen mixer and, where the frozen layers come
first, input gradients. Elementwise work (BatchNorm, activations, optimizer) is left out;
XLA counts it, but counts only the non-padding taps of a conv and each `while`/`scan` body
once (the 'shift' impl's kernel gradient is such a loop), and nothing inside custom calls
('native'), so its count is a lower bound for those impls.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Layer:
  """A weight-bearing layer in forward order; `macs` = forward multiply-adds (0: no matmul)."""
  name: str
  collection: str
  macs: int


def conv_macs(batch, out_h, out_w, out_channels, in_per_group, k):
  return batch * out_h * out_w * out_channels * in_per_group * k * k


def layers_of(model_config, image_shape, num_classes, batch):
  """The conv/dense layers (and BatchNorm, as 0-MAC `params`) of a model, in forward order."""
  mc = model_config
  h, w, c = image_shape
  bn = lambda name: Layer(name, 'params', 0)
  if mc.name == 'convmixer':
    p, width, k = mc.patch_size, mc.width, mc.kernel_size
    h, w = h // p, w // p  # VALID patch conv
    out = [Layer('stem', 'stem', conv_macs(batch, h, w, width, c, p)), bn('stem_bn')]
    for i in range(mc.depth):
      out += [Layer(f'block{i}.depthwise', 'spatial', conv_macs(batch, h, w, width, 1, k)),
              bn(f'block{i}.bn1'),
              Layer(f'block{i}.pointwise', 'channel', conv_macs(batch, h, w, width, width, 1)),
              bn(f'block{i}.bn2')]
    return out + [Layer('head', 'params', batch * width * num_classes)]
  if mc.name == 'sep_resnet_cifar':
    n, k, d = (mc.depth - 2) // 6, mc.kernel_size, mc.depth_multiplier
    widths = [16 * mc.width_multiplier, 32 * mc.width_multiplier, 64 * mc.width_multiplier]

    def separable(name, c_in, c_out, out_h, out_w):
      return [Layer(f'{name}.depthwise', 'spatial', conv_macs(batch, out_h, out_w, c_in * d, 1, k)),
              Layer(f'{name}.pointwise', 'channel',
                    conv_macs(batch, out_h, out_w, c_out, c_in * d, 1))]

    out = separable('stem', c, widths[0], h, w)
    c = widths[0]
    for stage, width in enumerate(widths):
      for block in range(n):
        stride = 2 if stage > 0 and block == 0 else 1
        h, w = -(-h // stride), -(-w // stride)
        name = f'stage{stage}.block{block}'
        out.append(bn(f'{name}.bn1'))
        if stride != 1 or c != width:
          out.append(Layer(f'{name}.shortcut', 'channel', conv_macs(batch, h, w, width, c, 1)))
        out += separable(f'{name}.conv1', c, width, h, w) + [bn(f'{name}.bn2')]
        out += separable(f'{name}.conv2', width, width, h, w)
        c = width
    return out + [bn('final_bn'), Layer('head', 'params', batch * c * num_classes)]
  raise ValueError(f'No analytic FLOP count for model {mc.name!r}; choose one of '
                   f"('convmixer', 'sep_resnet_cifar').")


def analytic_flops(layers, frozen):
  """Forward + backward FLOPs of one train step: 2·M fwd, 2·M dX if needed, 2·M dW if trained."""
  total, trainable_upstream = 0, False
  for layer in layers:
    trainable = layer.collection not in frozen
    total += 2 * layer.macs * (1 + trainable_upstream + trainable)
    trainable_upstream = trainable_upstream or trainable
  return total


def depthwise_shapes(model_config, image_shape, batch):
  """(x shape, kernel shape) of every depthwise conv, for resolving impl='auto'."""
  mc = model_config
  h, w, c = image_shape
  if mc.name == 'convmixer':
    h, w = h // mc.patch_size, w // mc.patch_size
    k = mc.kernel_size
    return [((batch, h, w, mc.width), (k, k, 1, mc.width))] * mc.depth
  n, k, d = (mc.depth - 2) // 6, mc.kernel_size, mc.depth_multiplier
  shapes = [((batch, h, w, c), (k, k, 1, c * d))]
  c = 16 * mc.width_multiplier
  for stage in range(3):
    width = 16 * mc.width_multiplier * 2 ** stage
    for block in range(n):
      shapes.append(((batch, h, w, c), (k, k, 1, c * d)))
      if stage > 0 and block == 0:
        h, w = -(-h // 2), -(-w // 2)
      shapes.append(((batch, h, w, width), (k, k, 1, width * d)))
      c = width
  return shapes
