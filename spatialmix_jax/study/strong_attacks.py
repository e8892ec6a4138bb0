"""Stronger attacks on a grid's kept checkpoints, without retraining: CELL/strong_attacks.json.

  python -m spatialmix_jax.study.strong_attacks --workdir=GRID_DIR \
      --epsilons=0,0.5,1,2,4,8,16 --max_examples=1000 [--attacks=fgsm,pgd20,apgd] \
      [--transfer=fgsm,pgd20,apgd] [--apgd_steps=100] [--cells=a,b] [--data_dir=DIR]

Why: the paper's PGD-2 (step ε, no random start) lands within a point of FGSM, and frozen random
filters are where gradient masking would inflate robustness. So every cell that still has its
checkpoint (and config.json) is attacked white-box with `--attacks` (fgsm, pgd20: PGD-20 from a
random start with steps of 2.5ε/20, apgd: APGD-CE), and every non-Full cell also with images
crafted by `--transfer` on the Full cell of its seed (the cell whose config differs only in
`mode`): a masked gradient misleads only the model's own attack, not one crafted on another
model. All cells see the same first `--max_examples` test images; the images crafted on a Full
cell are made once and classified by it (white-box) and by its Chans and Space peers.

The committed eval.json is never touched: results go to CELL/strong_attacks.json, {attack:
{settings, accuracy: {ε in 1/255: accuracy}}} with the clean accuracy on the same images, and
`strong_attack_report.py` writes GRID_DIR/strong_attacks.md (sanity checks and verdicts) from
them. A cell whose strong_attacks.json already holds every requested (attack, ε) on the same
images is skipped; otherwise the new results are merged into it, so an expensive attack can be
run at a few ε and a cheap one at many, by two commands.
"""

from spatialmix_jax.infra import host_memory

if __name__ == '__main__':  # a program of its own: before any import starts a thread
  host_memory.retain_freed_memory()

import dataclasses
import json
import os
import sys
import time

from absl import logging

from spatialmix_jax.infra import errors
from spatialmix_jax.study import records
from spatialmix_jax.study import strong_attack_report

OUTPUT = strong_attack_report.CELL_RECORD
DEFAULT_ATTACKS = 'fgsm,pgd20,apgd'
# Fields that do not make two cells different experiments for transfer: the mode is what
# differs between a Full source and its targets; the rest is bookkeeping or how to attack. The
# seed is kept: a cell's transfer source is the Full model of its own seed (the same data order
# and initial draw), so a grid of several seeds pairs them seed by seed.
_NOT_PEER_FIELDS = ('mode', 'frozen_collections') + tuple(
    f for f in records.BOOKKEEPING_FIELDS if f != 'seed')


@dataclasses.dataclass(frozen=True)
class Request:
  """What to run: the same for every cell of one command."""
  attacks: tuple  # white-box, every cell
  transfer: tuple  # crafted on the Full peer, every non-Full cell
  epsilons: str  # as eval.epsilons: units of 1/255
  max_examples: int
  apgd_steps: int
  data_dir: str = None


def parse_request(attacks, transfer, epsilons, max_examples, apgd_steps, data_dir=None):
  """A Request, or a one-line ConfigError naming the flag and what would work."""
  from spatialmix_jax.objectives import attacks as attacks_lib  # pylint: disable=g-import-not-at-top
  white_box = attacks_lib.parse_attacks(attacks)
  crafted = attacks_lib.parse_attacks(transfer)
  if not white_box and not crafted:
    raise errors.ConfigError('--attacks and --transfer are both empty; give e.g. '
                     f'--attacks={DEFAULT_ATTACKS}.')
  attacks_lib.parse_epsilons(epsilons)
  if not (max_examples == -1 or max_examples >= 1):
    raise errors.ConfigError(f'--max_examples must be >= 1, or -1 for the whole test split, got '
                     f'{max_examples}.')
  if apgd_steps < 1:
    raise errors.ConfigError(f'--apgd_steps must be >= 1, got {apgd_steps}.')
  if data_dir and not os.path.isdir(data_dir):
    raise errors.ConfigError(f'--data_dir {data_dir!r} is not a folder; give the TFDS data folder the '
                     'cells were trained on.')
  return Request(white_box, crafted, epsilons, max_examples, apgd_steps, data_dir or None)


def _peer_key(config):
  flat = records.flatten(config)
  return tuple(sorted((k, repr(v)) for k, v in flat.items()
                      if k not in _NOT_PEER_FIELDS and not k.startswith('eval.')))


def find_cells(workdir):
  """{cell: its config.json} of every cell of `workdir` with a config.json and checkpoints/."""
  if not os.path.isdir(workdir):
    raise errors.ConfigError(f'No grid in {workdir!r}: give the --workdir of a sweep '
                     '(python -m spatialmix_jax.study.sweep).')
  cells = {}
  for name in sorted(os.listdir(workdir)):
    celldir = os.path.join(workdir, name)
    config = records.read_json(os.path.join(celldir, 'config.json'))
    if config is not None and os.path.isdir(os.path.join(celldir, 'checkpoints')):
      cells[name] = config
  if not cells:
    raise errors.ConfigError(f'No cell under {workdir!r} has both config.json and checkpoints/: the '
                     'attacks need a kept checkpoint (grids that delete theirs cannot be '
                     're-attacked).')
  return cells


def plan(cells, request, only=None):
  """[(source cell or None, [cells])]: cells that differ only in mode, the Full one the source
  of the others' transfer attacks. Raises a one-line ConfigError for a cell it cannot attack."""
  if only:
    unknown = sorted(set(only) - set(cells))
    if unknown:
      raise errors.ConfigError(f'--cells {unknown} have no config.json and checkpoints/ here; cells '
                       f'that do: {sorted(cells)}.')
  groups = {}
  for name, config in cells.items():
    groups.setdefault(_peer_key(config), []).append(name)
  planned = []
  for members in groups.values():
    selected = [m for m in members if not only or m in only]
    if not selected:
      continue
    full = [m for m in members if cells[m].get('mode') == 'full']
    source = full[0] if len(full) == 1 else None
    if request.transfer:
      orphans = [m for m in selected if cells[m].get('mode') != 'full' and source is None]
      if orphans:
        raise errors.ConfigError(f'{orphans} have no Full cell with a checkpoint whose config differs '
                         'only in mode, to craft the --transfer attacks on; train it, or pass '
                         '--transfer= (empty).')
    planned.append((source, selected))
  return planned


def _overrides(request):
  overrides = {'eval.attacks': ','.join(request.attacks + request.transfer),
               'eval.epsilons': request.epsilons, 'eval.max_examples': request.max_examples,
               'eval.apgd_steps': request.apgd_steps, 'eval.transfer_from': None}
  if request.data_dir:
    overrides['data_dir'] = request.data_dir
  return overrides


def _entry(attack, eval_config, accuracy, source=None, source_step=None):
  from spatialmix_jax.objectives import attacks as attacks_lib  # pylint: disable=g-import-not-at-top
  settings = attacks_lib.settings(attack, eval_config)
  if source is not None:
    settings.update({'crafted_with': attack, 'source': source, 'source_step': source_step})
  return {'settings': settings, 'accuracy': accuracy}


def attack_group(workdir, source, members, request):
  """{cell: record} of one group; the source's crafted images serve every member."""
  from spatialmix_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.objectives import attacks as attacks_lib  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.objectives import eval_loop  # pylint: disable=g-import-not-at-top
  names = list(members) + ([source] if source and source not in members else [])
  runs = {}
  for name in names:
    experiment, state, step = evaluation.restore_run(os.path.join(workdir, name),
                                                     _overrides(request))
    runs[name] = (experiment, evaluation.model_variables(state), step)
  first = runs[names[0]][0]
  eval_data = input_pipeline.create_eval_data(first, max_examples=request.max_examples)
  epsilons = attacks_lib.parse_epsilons(request.epsilons)
  results = {}
  for name in members:
    experiment, variables, step = runs[name]
    clean = eval_loop.run(eval_loop.compile_eval_step(experiment), variables, eval_data,
                          experiment.mesh)
    results[name] = {'cell': name, 'mode': experiment.config.mode,
                     'seed': experiment.config.seed, 'step': step,
                     'max_examples': request.max_examples, 'num_examples': clean['count'],
                     'clean_accuracy': clean['accuracy'], 'epsilon_unit': '1/255',
                     'attacks': {}}
  eval_config = first.config.eval
  for attack in dict.fromkeys(request.attacks + request.transfer):
    started = time.time()
    if source is not None and attack in request.transfer:
      # Crafted once on the source: white-box for it, transferred to every other member.
      targets = [source] + [m for m in members if m != source]
      crafted = attacks_lib.crafted_accuracy(
          attack, epsilons, runs[source][:2], [runs[t][:2] for t in targets], eval_data)
      for target, accuracy in zip(targets, crafted):
        if target == source:
          if source in members and attack in request.attacks:
            results[source]['attacks'][attack] = _entry(attack, eval_config, accuracy)
        else:
          results[target]['attacks'][f'transfer_{attack}'] = _entry(
              attack, eval_config, accuracy, source, runs[source][2])
      logging.info('%s crafted on %s for %s: %.0f s', attack, source, targets,
                   time.time() - started)
    if attack not in request.attacks:
      continue
    for name in members:
      if attack in results[name]['attacks']:
        continue
      started = time.time()
      accuracy, = attacks_lib.crafted_accuracy(attack, epsilons, runs[name][:2],
                                               [runs[name][:2]], eval_data)
      results[name]['attacks'][attack] = _entry(attack, eval_config, accuracy)
      logging.info('%s on %s: %s in %.0f s', attack, name, accuracy, time.time() - started)
  return results


def wanted(request, mode):
  """The attack names a cell of `mode` gets from `request`."""
  transfer = [] if mode == 'full' else [f'transfer_{a}' for a in request.transfer]
  return list(request.attacks) + transfer


def missing(record, request, mode):
  """Whether `record` (None: no file) lacks any (attack, ε) of `request`, or holds them for
  other images or with another number of APGD steps."""
  if record is None or record.get('max_examples') != request.max_examples:
    return True
  from spatialmix_jax.objectives import attacks as attacks_lib  # pylint: disable=g-import-not-at-top
  labels = {f'{label:g}' for label, _ in attacks_lib.parse_epsilons(request.epsilons)}
  for name in wanted(request, mode):
    entry = record['attacks'].get(name)
    if entry is None or not labels <= set(entry['accuracy']):
      return True
    if name.endswith('apgd') and entry['settings']['steps'] != request.apgd_steps:
      return True
  return False


def merge(old, new):
  """`new` with the (attack, ε) results of `old` it did not recompute, when `old` is of the
  same checkpoint, images and attack settings."""
  if old is None or (old.get('step'), old.get('max_examples')) != (new['step'],
                                                                   new['max_examples']):
    return new
  merged = {**new, 'attacks': dict(old['attacks'])}
  for name, entry in new['attacks'].items():
    kept = merged['attacks'].get(name)
    if kept is not None and kept['settings'] == entry['settings']:
      entry = {**entry, 'accuracy': {**kept['accuracy'], **entry['accuracy']}}
    merged['attacks'][name] = entry
  return merged


def run(workdir, request, only=None, overwrite=False):
  """Attacks every planned cell that lacks part of `request` (every one with `overwrite`) and
  merges the results into its strong_attacks.json; returns {cell: 'ran' | 'skipped'}."""
  cells = find_cells(workdir)
  planned = plan(cells, request, only)
  from spatialmix_jax.config import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  experiment_lib.check_workdir_writable(workdir)
  status = {}
  for source, members in planned:
    saved = {m: records.read_json(os.path.join(workdir, m, OUTPUT)) for m in members}
    todo = [m for m in members
            if overwrite or missing(saved[m], request, cells[m].get('mode'))]
    status.update({m: 'skipped' for m in members if m not in todo})
    if not todo:
      continue
    for name, record in attack_group(workdir, source, todo, request).items():
      record = record if overwrite else merge(saved[name], record)
      with open(os.path.join(workdir, name, OUTPUT), 'w') as f:
        json.dump(record, f, indent=2, sort_keys=True, ensure_ascii=False)
      status[name] = 'ran'
  return status


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  try:
    request = parse_request(FLAGS.attacks, FLAGS.transfer, FLAGS.epsilons, FLAGS.max_examples,
                            FLAGS.apgd_steps, FLAGS.data_dir)
    only = [c for c in FLAGS.cells.split(',') if c] if FLAGS.cells else None
    status = run(FLAGS.workdir, request, only, FLAGS.overwrite)
    report = strong_attack_report.write(FLAGS.workdir)
  except errors.UserError as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)
  print(json.dumps(status, indent=1))
  print(f'Wrote {report}')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'The grid folder; CELL/strong_attacks.json per cell.')
  flags.DEFINE_string('attacks', DEFAULT_ATTACKS, 'White-box attacks: fgsm, pgd, pgd20, apgd.')
  flags.DEFINE_string('transfer', DEFAULT_ATTACKS,
                      'Attacks crafted on the Full cell of the same seed (empty: none).')
  flags.DEFINE_string('epsilons', '0,0.5,1,2,4,8,16', 'ε values in units of 1/255.')
  flags.DEFINE_integer('max_examples', 1000, 'The first N test images (-1: all).')
  flags.DEFINE_integer('apgd_steps', 100, 'APGD-CE iterations.')
  flags.DEFINE_string('cells', '', 'Comma-separated cells to attack (default: all with a '
                      'checkpoint).')
  flags.DEFINE_string('data_dir', None, 'TFDS data folder, when not where the cells read it.')
  flags.DEFINE_bool('overwrite', False, 'Attack cells that already have this request again.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
