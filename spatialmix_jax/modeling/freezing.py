"""Freezing whole variable collections: which ones a mode freezes, splitting the weights into
trainable and frozen parts and merging them back, an optimizer that leaves frozen ones
untouched, and the check that they really did not change.

A frozen collection gets `optax.set_to_zero()` instead of the trainable chain, so it has no
optimizer state, no weight decay, and no part in gradient clipping or its global norm. The
train step differentiates the trainable part only (`split`), so no frozen gradient is ever
computed.
"""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spatialmix_jax.infra.errors import ConfigError

MODES = ('full', 'chans', 'space')
_MODE_FROZEN = {'full': (), 'chans': ('spatial', 'stem'), 'space': ('channel', 'stem')}
# The mixer a frozen mode is about: a model without it cannot be trained in that mode.
_MODE_MIXER = {'chans': ('spatial', 'depthwise (spatial) filters'),
               'space': ('channel', 'pointwise (channel) convolutions')}


def _names(collections):
  """A tuple of names from a tuple or a comma-separated string (never its characters)."""
  if isinstance(collections, str):
    collections = collections.split(',')
  return tuple(n.strip() for n in collections if n.strip())


def frozen_collections(mode, available, explicit=None):
  """Names of the collections to freeze, in `available` order.

  `explicit` (a tuple or a comma-separated string), when given, overrides `mode`; each of its
  names must be one of `available`, the model's collections. A frozen mode needs the mixer it
  freezes: a model with no separable convolutions has none, and training it would silently be
  `full`.
  """
  available = tuple(available)
  if explicit is not None:
    names = _names(explicit)
    unknown = [n for n in names if n not in available]
    if unknown:
      raise ConfigError(f'Cannot freeze {unknown}: this model has collections {available}.')
    return tuple(c for c in available if c in names)
  if mode not in MODES:
    raise ConfigError(f'Unknown mode {mode!r}; choose one of {MODES}.')
  collection, what = _MODE_MIXER.get(mode, (None, None))
  if collection is not None and collection not in available:
    raise ConfigError(f'mode {mode!r} freezes the {collection!r} collection, but this model has no '
                      f'{what} (collections {available}); use mode full, or a separable model '
                      '(convmixer, sep_resnet_*).')
  return tuple(c for c in available if c in _MODE_FROZEN[mode])


def split_variables(variables):
  """Splits `model.init` output into (weights: {collection: tree}, batch_stats)."""
  weights = {c: t for c, t in variables.items() if c != 'batch_stats'}
  return weights, variables.get('batch_stats', {})


def split(weights, frozen):
  """(trainable, frozen) parts of `weights` ({collection: tree})."""
  return ({c: w for c, w in weights.items() if c not in frozen},
          {c: w for c, w in weights.items() if c in frozen})


def merge(trainable, frozen_part):
  return {**trainable, **frozen_part}


def full_gradients(trainable_grads, frozen_part):
  """Gradients of every collection for the optimizer: the frozen ones go to
  `optax.set_to_zero`, which never reads the zeros put here."""
  return merge(trainable_grads, jax.tree.map(jnp.zeros_like, frozen_part))


def labels(weights, frozen):
  """A pytree like `weights` holding 'frozen' or 'train' for every leaf."""
  frozen = _names(frozen)
  return {c: jax.tree.map(lambda _, c=c: 'frozen' if c in frozen else 'train', t)
          for c, t in weights.items()}


def freeze(tx, weights, frozen):
  """Wraps `tx` (the whole trainable chain) so the `frozen` collections never change."""
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()},
                               labels(weights, frozen))


def unchanged(initial, final, frozen):
  """Whether every frozen collection of `final` equals `initial`, bitwise."""
  initial, final = jax.device_get(initial), jax.device_get(final)
  return all(
      np.array_equal(a, b)
      for c in frozen
      for a, b in zip(jax.tree.leaves(initial[c]), jax.tree.leaves(final[c])))


def fingerprint(weights, frozen):
  """{collection: SHA-256 of its leaves} for each frozen collection: every leaf's path, dtype,
  shape and bytes, in tree order. A run records it for the state it really starts from, so the
  end-of-run check compares bits with bits instead of recomputing the init (a recomputation
  outside the run's jit can round differently, e.g. the smoothed filters' einsum)."""
  weights = jax.device_get(weights)
  digests = {}
  for collection in frozen:
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(weights[collection])[0]:
      array = np.ascontiguousarray(np.asarray(leaf))
      for part in (jax.tree_util.keystr(path), str(array.dtype), str(array.shape)):
        digest.update(part.encode())
      digest.update(array.tobytes())
    digests[collection] = digest.hexdigest()
  return digests


def parameter_report(weights, frozen):
  """{'trainable': int, 'frozen': int, 'per_collection': {collection: int}}."""
  frozen = _names(frozen)
  per_collection = {c: sum(int(x.size) for x in jax.tree.leaves(t)) for c, t in weights.items()}
  frozen_count = sum(n for c, n in per_collection.items() if c in frozen)
  return {'trainable': sum(per_collection.values()) - frozen_count, 'frozen': frozen_count,
          'per_collection': per_collection}


def parameter_overview(weights):
  """Table of every weight (path, shape, size, mean, std), paths led by the collection."""
  # CLU only here: the train step and the accelerator benchmark must not need it.
  from clu import parameter_overview as clu_overview  # pylint: disable=g-import-not-at-top
  return clu_overview.get_parameter_overview(weights)
