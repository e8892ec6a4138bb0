"""The one folder the project writes to outside a run's workdir: the prepared `digits` dataset
and the compiled native depthwise kernel.

It is `$SPATIALMIX_CACHE_DIR` when set, else `$XDG_CACHE_HOME/spatialmix_jax`, else
`~/.cache/spatialmix_jax`. Nothing in it is precious: deleting it only costs a rebuild.
"""

import os
import tempfile

from spatialmix_jax.infra import errors

ENV_VAR = 'SPATIALMIX_CACHE_DIR'


CacheDirError = errors.CacheDirError  # raised by writable_dir


def root():
  explicit = os.environ.get(ENV_VAR)
  if explicit:
    return explicit
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'spatialmix_jax')


def writable_dir(*parts):
  """root()/parts, created if needed; CacheDirError when it cannot be written.

  Writability is probed with a real file: permission bits say nothing for root, or on a
  read-only mount.
  """
  path = os.path.join(root(), *parts)
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise CacheDirError(
        f'The cache folder {path!r} is not writable ({e.strerror or type(e).__name__}); set '
        f'{ENV_VAR} to a folder you can write to.') from None
  return path
