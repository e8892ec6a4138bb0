"""Runs a grid of ordinary training runs, one workdir per cell, resumably.

A grid config (configs/sweeps/*.py) returns a ConfigDict with
  name:  the grid's name (report headings),
  base:  a full run config (configs/base.py schema),
  axes:  a list of axes; an axis is a list of override dicts {dotted field: value}, and a
         cell takes one dict from every axis (their Cartesian product). An optional '_name'
         entry names the choice in the cell's folder name.

  python -m spatialmix_jax.study.sweep --config=configs/sweeps/modes_digits.py --workdir=/tmp/sweep
  python -m spatialmix_jax.study.sweep --config=configs/sweeps/convmixer_depth.py:small --workdir=...
  python -m spatialmix_jax.study.report --workdir=/tmp/sweep

Each cell is trained in-process by train.train_and_evaluate into WORKDIR/<cell>/; when
base.eval.attacks is set the cell is then evaluated under attack (eval.json). A cell with
results.json (and eval.json when attacked) is skipped, and an interrupted cell resumes from
its checkpoint, so rerunning the same command finishes the grid.
"""

from spatialmix_jax.infra import host_memory

if __name__ == '__main__':  # a program of its own: before any import starts a thread
  host_memory.retain_freed_memory()

import copy
import functools
import itertools
import json
import os

from absl import logging

from spatialmix_jax.infra.errors import ConfigError


def set_field(config, dotted, value):
  """config.a.b = value for 'a.b', a one-line error naming the valid fields otherwise."""
  *parents, leaf = dotted.split('.')
  node = config
  for name in parents:
    if name not in node:
      raise ConfigError(f'Unknown config field {dotted!r} in a grid axis; valid top-level '
                        f'fields: {sorted(config.keys())}.')
    node = node[name]
  if leaf not in node:
    raise ConfigError(f'Unknown config field {dotted!r} in a grid axis; valid fields there: '
                      f'{sorted(node.keys())}.')
  node[leaf] = value


def _choice_name(overrides):
  if '_name' in overrides:
    return str(overrides['_name'])
  return '_'.join(f'{k.split(".")[-1]}-{v}' for k, v in overrides.items())


def cells(grid):
  """[(cell name, config, merged overrides)] of the grid's Cartesian product, in order."""
  if not grid.get('axes'):
    raise ConfigError('A grid config needs `axes`: a list of lists of override dicts.')
  result = []
  for choice in itertools.product(*grid.axes):
    config = copy.deepcopy(grid.base)
    config.unlock()
    merged = {}
    for overrides in choice:
      for key, value in overrides.items():
        if key != '_name':
          set_field(config, key, value)
          merged[key] = value
    name = '.'.join(_choice_name(o) for o in choice)
    result.append((name, config, merged))
  names = [name for name, _, _ in result]
  if len(set(names)) != len(names):
    raise ConfigError(f'Grid {grid.name!r} gives two cells the same folder name; add _name '
                      'entries to its axes.')
  return result


def _attacked(config):
  return bool(config.eval.attacks.strip())


def is_finished(celldir, config):
  done = os.path.exists(os.path.join(celldir, 'results.json'))
  if _attacked(config):
    done = done and os.path.exists(os.path.join(celldir, 'eval.json'))
  return done


def run(grid, workdir, only=None):
  """Runs every unfinished cell (or the named ones in `only`); returns {cell: 'ran'|'skipped'}."""
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.config import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.jobs import train  # pylint: disable=g-import-not-at-top
  planned = cells(grid)
  if only:
    known = [name for name, _, _ in planned]
    unknown = [name for name in only if name not in known]
    if unknown:
      raise ConfigError(f'Unknown cell(s) {unknown}; this grid has {known}.')
    planned = [cell for cell in planned if cell[0] in only]
  for _, config, _ in planned:  # every cell's config is checked before any cell runs
    experiment_lib.validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
    json.dump({'name': grid.name, 'cells': {n: o for n, _, o in cells(grid)}}, f, indent=2,
              default=str)
  status = {}
  for index, (name, config, _) in enumerate(planned, 1):
    celldir = os.path.join(workdir, name)
    if is_finished(celldir, config):
      logging.info('[%d/%d] %s: finished, skipped.', index, len(planned), name)
      status[name] = 'skipped'
      continue
    logging.info('[%d/%d] %s', index, len(planned), name)
    if not os.path.exists(os.path.join(celldir, 'results.json')):
      train.train_and_evaluate(config, celldir)
    if _attacked(config):
      evaluation.evaluate(config, celldir)
    status[name] = 'ran'
  return status


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.config import cli  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  # The project's own errors (a bad grid, a cell's config, an unwritable workdir) are one line;
  # anything else keeps its traceback, whose last line names the cell's workdir and step.
  with cli.user_errors_as_one_line():
    grid = FLAGS.config
    if FLAGS.dry_run:
      for name, _, overrides in cells(grid):
        print(name, json.dumps(overrides, default=str))
      return
    only = [c for c in FLAGS.cells.split(',') if c] if FLAGS.cells else None
    status = run(grid, FLAGS.workdir, only)
  print(json.dumps(status, indent=1))


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'Folder of the sweep; cells go to WORKDIR/<cell>/.')
  flags.DEFINE_bool('dry_run', False, 'List the cells and their overrides, run nothing.')
  flags.DEFINE_string('cells', '', 'Comma-separated cell names to run (default: all).')
  config_flags.DEFINE_config_file('config', None, 'A grid config under configs/sweeps/.',
                                  lock_config=True)
  flags.mark_flags_as_required(['config', 'workdir'])
  from spatialmix_jax.config import cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=functools.partial(cli.parse_flags, kind='grid config'))
