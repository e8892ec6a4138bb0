"""The project's own user-facing errors: a setting, file or folder the user gave that cannot work.

Each is raised where its check is made, with a one-line message that says what to do. The entry
points (`main.py`, the sweep, the report, spectral analysis, the weight import) print a
`UserError` as one `error:` line with exit code 2, and nothing else: a library's ValueError, or
a bug of ours, is not a UserError and keeps its traceback, so it can be debugged.

Each type also derives from the built-in exception its check raised before these types existed
(ValueError, PermissionError, FloatingPointError), so code that catches the built-in still
catches it.
"""


class UserError(Exception):
  """A problem the user fixes (a setting, a file, a folder); the message is one line."""


class ConfigError(UserError, ValueError):
  """A config file, variant, override or value that cannot work (or does nothing)."""


class DataError(UserError, ValueError):
  """A dataset that is not prepared where it was looked for, or does not fit the config."""


class WorkdirError(UserError, PermissionError):
  """A workdir that cannot be written."""


class CacheDirError(UserError, PermissionError):
  """The cache root (infra/cache.py) cannot be written; the message names the variable to set."""


class CheckpointError(UserError, ValueError):
  """A workdir without the checkpoint asked for, or with one of another model."""


class NoCheckpointError(CheckpointError):
  """No (readable) checkpoint, or none at the step asked for."""


class ArchitectureMismatchError(CheckpointError):
  """A checkpoint written by another architecture than the config builds."""


class NoResultsError(UserError, ValueError):
  """A folder without the records a command reads (no sweep, no finished cell)."""


class WeightsError(UserError, ValueError):
  """A PyTorch checkpoint that is not the expected ConvMixer, or a bad import/export option."""


class DivergedError(UserError, FloatingPointError):
  """Training reached a non-finite loss: the recipe (learning rate, clipping) is the user's."""
