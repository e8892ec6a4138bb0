"""Named ConvMixer sizes: the one table that configs, PyTorch weight import and the benchmarks
read, each with where it comes from and which of its numbers that source does not state.

`model` holds `config.model` fields (`config.model.update(preset.model)`); `act` is given only
where the source fixes it. `params` is the size the source reports, in millions, for the
classifier it was published with (`classes`); None where the source reports none.
`tests/test_models.py` builds every preset and checks its parameter count against `params`
and against the closed-form count of a ConvMixer.
"""

import dataclasses

from spatialmix_jax.infra.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Preset:
  model: dict
  source: str
  classes: int
  params: float | None = None  # millions, as the source rounds them
  assumed: tuple = ()  # fields of `model` that the source does not state

  def describe(self):
    m = self.model
    text = (f'ConvMixer-{m["width"]}/{m["depth"]} (kernel {m["kernel_size"]}, '
            f'patch {m["patch_size"]})')
    return text + (f'; assumed: {", ".join(self.assumed)}' if self.assumed else '')


def _convmixer(width, depth, kernel_size, patch_size, **extra):
  return dict(name='convmixer', width=width, depth=depth, kernel_size=kernel_size,
              patch_size=patch_size, **extra)


PRESETS = {
    # timm's registered ConvMixers (timm/models/convmixer.py), the three locuslab released;
    # sizes from the ConvMixer paper (Trockman & Kolter), Table 1 and timm's model cards.
    'convmixer_1536_20': Preset(_convmixer(1536, 20, 9, 7, act='gelu'),
                                'timm convmixer_1536_20 (ConvMixer paper)', 1000, 51.6),
    'convmixer_768_32': Preset(_convmixer(768, 32, 7, 7, act='relu'),
                               'timm convmixer_768_32 (ConvMixer paper; ReLU)', 1000, 21.1),
    'convmixer_1024_20_ks9_p14': Preset(_convmixer(1024, 20, 9, 14, act='gelu'),
                                        'timm convmixer_1024_20_ks9_p14 (ConvMixer paper)',
                                        1000, 24.4),
    # locuslab/convmixer-cifar10's README command (--hdim 256 --depth 8 --psize 2 --conv-ks 5).
    'convmixer_256_8_cifar': Preset(_convmixer(256, 8, 5, 2, act='gelu'),
                                    'locuslab/convmixer-cifar10 README', 10),
    # The spatial-mixing paper states width, kernel and patch of its CIFAR and ImageNet
    # ConvMixers but no depth (Fig. 5 sweeps CIFAR depths): these depths are ours.
    'spatialmix_cifar': Preset(_convmixer(128, 8, 8, 1), 'Cazenavette et al., CIFAR-10 (Fig. 5)',
                               10, assumed=('depth',)),
    'spatialmix_imagenet': Preset(_convmixer(512, 12, 8, 7),
                                  'Cazenavette et al., ImageNet (Fig. 5)', 1000,
                                  assumed=('depth',)),
}


def get(name):
  if name not in PRESETS:
    raise ConfigError(f'Unknown ConvMixer preset {name!r}; choose one of {tuple(PRESETS)}.')
  return PRESETS[name]


def model_fields(name):
  """The `config.model` fields of preset `name` (a fresh dict)."""
  return dict(get(name).model)
