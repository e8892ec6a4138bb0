"""Command-line parsing shared by `main.py` and `python -m spatialmix_jax.study.sweep`.

A config is a Python file under `configs/` (`--config=configs/NAME.py[:VARIANT]`) whose fields
are overridden with `--config.FIELD=VALUE`. absl and ml_collections report a missing file, a
misspelt field or a value of the wrong type as a traceback of dozens of lines; `parse_flags`
turns each into one `error:` line that names what would work, and exit code 2, before any
data or model is touched. `user_errors_as_one_line` does the same for the project's own
errors (`infra/errors.py`) raised later, and for nothing else.
"""

import contextlib
import difflib
import importlib.util
import os
import re
import sys

from absl import flags
import ml_collections

from spatialmix_jax.infra import errors
from spatialmix_jax.infra.errors import ConfigError

USAGE_EXIT_CODE = 2


def fail(message):
  """Prints `error: message` (its first line) to stderr and exits with code 2."""
  print(f'error: {str(message).splitlines()[0] if str(message) else message}', file=sys.stderr)
  sys.exit(USAGE_EXIT_CODE)


@contextlib.contextmanager
def user_errors_as_one_line():
  """The project's own errors (a setting, file or folder the user fixes) leave the body as one
  `error:` line and exit code 2; any other exception, a library's or a bug, keeps its
  traceback, which is what it takes to debug it."""
  try:
    yield
  except errors.UserError as e:
    fail(e)


def _flag_value(argv, name):
  """The value given to --name (as --name=V or --name V), or None."""
  for index, arg in enumerate(argv):
    match = re.match(rf'^-{{1,2}}{name}(=(.*))?$', arg)
    if match:
      if match.group(1) is not None:
        return match.group(2)
      return argv[index + 1] if index + 1 < len(argv) else None
  return None


def _override_fields(argv, name):
  """Dotted fields of every --name.FIELD[=V] (and boolean --noname.FIELD) in argv."""
  fields = []
  for arg in argv:
    match = re.match(rf'^-{{1,2}}(?:no)?{name}\.([^=]+)', arg)
    if match:
      fields.append(match.group(1))
  return fields


def dotted_fields(config, prefix=''):
  """Every leaf field of a ConfigDict as a dotted name ('optimizer.learning_rate', ...)."""
  names = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      names += dotted_fields(value, f'{prefix}{key}.')
    else:
      names.append(f'{prefix}{key}')
  return names


def has_field(config, dotted):
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def unknown_field_message(config, dotted, flag_name='config'):
  """One line for an unknown field: the closest existing names, by spelling and by last part."""
  names = dotted_fields(config)
  leaf = dotted.split('.')[-1]
  close = [n for n in names if n.split('.')[-1] == leaf]
  close += [n for n in difflib.get_close_matches(dotted, names, n=3, cutoff=0.6) if n not in close]
  hint = (f'did you mean {" or ".join(f"--{flag_name}.{n}" for n in close[:3])}?' if close
          else f'fields start with {sorted({n.split(".")[0] for n in names})}.')
  return f'--{flag_name}.{dotted}: the config has no field {dotted!r}; {hint}'


def _config_files_near(path):
  folder = os.path.dirname(path) or '.'
  if not os.path.isdir(folder):
    folder = 'configs'
  if not os.path.isdir(folder):
    return []
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if f.endswith('.py') and not f.startswith('_'))


def _importable_configs(path):
  """Puts the folder above `configs/` on sys.path, so `from configs import base` in a config
  file works when the command runs from another directory."""
  folder = os.path.dirname(os.path.abspath(path))
  while os.path.basename(folder) in ('configs', 'sweeps'):
    folder = os.path.dirname(folder)
  if folder not in sys.path:
    sys.path.insert(0, folder)


def load_config_file(spec, flag_name='config', kind='config'):
  """The ConfigDict of `path[:variant]`, or a ConfigError of one line."""
  path, _, variant = spec.partition(':')
  if not os.path.isfile(path):
    nearby = _config_files_near(path)
    raise ConfigError(f'Cannot load {kind} {path!r} (--{flag_name}={spec}): no such file'
                      + (f'; choose one of {", ".join(nearby)}.' if nearby else '.'))
  _importable_configs(path)
  module_spec = importlib.util.spec_from_file_location('_checked_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
  except TypeError as e:
    if variant and 'positional argument' in str(e):
      raise ConfigError(f'--{flag_name}={spec}: {path} has no variants; drop ":{variant}".'
                        ) from None
    raise ConfigError(f'--{flag_name}={spec}: {type(e).__name__}: {e}') from None
  except Exception as e:  # pylint: disable=broad-except
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ConfigError(f'--{flag_name}={spec}: {message}') from None
  return config


def check_command_line(argv, flag_name='config', kind='config'):
  """ConfigError for a bad config file or an override of a field the config does not have."""
  if _flag_value(argv, 'mode') is not None:
    raise ConfigError('--mode is not a flag: --job=train|eval says what to do with the workdir, '
                      '--config.mode=full|chans|space which mixers the model learns.')
  spec = _flag_value(argv, flag_name)
  if spec is None:
    raise ConfigError(f'--{flag_name} is required: e.g. --{flag_name}=configs/default.py.')
  config = load_config_file(spec, flag_name, kind)
  for dotted in _override_fields(argv, flag_name):
    if not has_field(config, dotted):
      raise ConfigError(unknown_field_message(config, dotted, flag_name))


def parse_flags(argv, flag_name='config', kind='config'):
  """absl's parser, with every command-line mistake one `error:` line and exit code 2.

  `kind` names what the config file holds in messages ('config', 'grid config').
  """
  try:
    check_command_line(argv[1:], flag_name, kind)
    return flags.FLAGS(argv)
  except ConfigError as e:
    fail(e)
  except flags.Error as e:
    # absl's message already names the flag and the value, e.g. "flag
    # --config.num_train_steps=abc: invalid literal for int() with base 10: 'abc'".
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    fail(lines[-1] if lines else type(e).__name__)
  except (AttributeError, KeyError, TypeError) as e:
    message = ' '.join(str(e).replace('\\n', ' ').replace("\\'", '').split()).strip('\'"')
    fail(f'bad config override: {message}')
