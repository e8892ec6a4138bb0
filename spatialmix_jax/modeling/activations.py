"""The models' activations, by the name `config.model.act` gives them."""

import flax.linen as nn
from jax import lax

from spatialmix_jax.infra.errors import ConfigError


def gelu(x):
  """Exact GELU, x·Φ(x), written as torch.nn.GELU computes it: 0.5·x·(1 + erf(x/√2)).

  jax.nn.gelu(approximate=False) goes through erfc instead, which XLA:CPU evaluates as two
  branches (a polynomial and an exponential) and a select: twice the cost for the same
  function (the two differ by float32 rounding only).
  """
  return 0.5 * x * (1.0 + lax.erf(x * 0.7071067811865476))


ACTIVATIONS = {
    'gelu': gelu,  # exact, as torch.nn.GELU
    'relu': nn.relu,
}


def activation(name):
  if name not in ACTIVATIONS:
    raise ConfigError(f'Unknown act {name!r}; choose one of {tuple(ACTIVATIONS)}.')
  return ACTIVATIONS[name]
