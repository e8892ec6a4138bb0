"""Freezing whole variable collections: which ones a mode freezes, and an optimizer that
leaves them untouched.

A frozen collection gets `optax.set_to_zero()` instead of the trainable chain, so it has no
optimizer state, no weight decay, and no part in gradient clipping or its global norm.
"""

import jax
import optax
from clu import parameter_overview as clu_overview

MODES = ('full', 'chans', 'space')
_MODE_FROZEN = {'full': (), 'chans': ('spatial', 'stem'), 'space': ('channel', 'stem')}


def _names(collections):
  """A tuple of names from a tuple or a comma-separated string (never its characters)."""
  if isinstance(collections, str):
    collections = collections.split(',')
  return tuple(n.strip() for n in collections if n.strip())


def frozen_collections(mode, available, explicit=None):
  """Names of the collections to freeze, in `available` order.

  `explicit` (a tuple or a comma-separated string), when given, overrides `mode`; each of its
  names must be one of `available`, the model's collections.
  """
  available = tuple(available)
  if explicit is not None:
    names = _names(explicit)
    unknown = [n for n in names if n not in available]
    if unknown:
      raise ValueError(f'Cannot freeze {unknown}: this model has collections {available}.')
    return tuple(c for c in available if c in names)
  if mode not in MODES:
    raise ValueError(f'Unknown mode {mode!r}; choose one of {MODES}.')
  return tuple(c for c in available if c in _MODE_FROZEN[mode])


def split_variables(variables):
  """Splits `model.init` output into (weights: {collection: tree}, batch_stats)."""
  weights = {c: t for c, t in variables.items() if c != 'batch_stats'}
  return weights, variables.get('batch_stats', {})


def labels(weights, frozen):
  """A pytree like `weights` holding 'frozen' or 'train' for every leaf."""
  frozen = _names(frozen)
  return {c: jax.tree.map(lambda _, c=c: 'frozen' if c in frozen else 'train', t)
          for c, t in weights.items()}


def freeze(tx, weights, frozen):
  """Wraps `tx` (the whole trainable chain) so the `frozen` collections never change."""
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()},
                               labels(weights, frozen))


def parameter_report(weights, frozen):
  """{'trainable': int, 'frozen': int, 'per_collection': {collection: int}}."""
  frozen = _names(frozen)
  per_collection = {c: sum(int(x.size) for x in jax.tree.leaves(t)) for c, t in weights.items()}
  frozen_count = sum(n for c, n in per_collection.items() if c in frozen)
  return {'trainable': sum(per_collection.values()) - frozen_count, 'frozen': frozen_count,
          'per_collection': per_collection}


def parameter_overview(weights):
  """Table of every weight (path, shape, size, mean, std), paths led by the collection."""
  return clu_overview.get_parameter_overview(weights)
