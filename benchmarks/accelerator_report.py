"""The accelerator benchmark's record keeping: its rows, their derived columns, the printed
table, the JSON file (rewritten after every row) and the time budget's estimates."""

import importlib.metadata
import json
import os
import time

from benchmarks import harness

TARGET_MODEL = 'convmixer_768_32'  # the target: JAX >= 1.0x timm's img/s here
COLUMNS = (('model', 21, 's'), ('mode', 5, 's'), ('framework', 4, 's'),
           ('impl_label', 13, 's'), ('batch', 5, 'd'), ('img_per_s', 9, '.1f'),
           ('step_ms', 8, '.2f'), ('compile_s', 7, '.1f'), ('tflops_per_s', 7, '.1f'),
           ('mfu', 5, '.3f'), ('memory_gib', 7, '.2f'), ('ratio_vs_timm', 6, '.2f'),
           ('status', 7, 's'))
TITLES = {'framework': 'fw', 'impl_label': 'impl', 'img_per_s': 'img/s', 'step_ms': 'step ms',
          'compile_s': 'compile', 'tflops_per_s': 'TF/s', 'memory_gib': 'mem GiB',
          'ratio_vs_timm': 'x timm'}


def versions(packages):
  found = {}
  for package in packages:
    try:
      found[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      found[package] = None
  return found


def finish(record, analytic_flops, peak_tflops):
  """Adds img/s, TF/s, MFU and GiB to a timed record (step_ms, memory_bytes)."""
  step_s = record['step_ms'] * 1e-3
  record['img_per_s'] = record['batch'] / step_s
  record['tflops_per_s'] = analytic_flops / step_s / 1e12
  record['mfu'] = record['tflops_per_s'] / peak_tflops if peak_tflops else None
  memory = record.get('memory_bytes')
  record['memory_gib'] = memory / 2**30 if memory else None
  record['status'] = 'ok'
  return record


class Run:
  """The rows so far, printed and written as each arrives, and the clock of the budget."""

  def __init__(self, out, budget_s, start, meta):
    self.out, self.budget_s, self.start, self.meta = out, budget_s, start, meta
    self.records = []

  def elapsed_s(self):
    return time.perf_counter() - self.start

  def skip_reason(self, model, framework):
    """Why a row of `model` in `framework` would not fit the budget, or None. The estimate
    is the slowest finished row of that model and framework, else of that framework."""
    done = [r for r in self.records if r['framework'] == framework and r.get('row_s')]
    estimate = max([r['row_s'] for r in done if r['model'] == model] or
                   [r['row_s'] for r in done] or [0.0])
    left = self.budget_s - self.elapsed_s()
    if estimate > left or left <= 0:
      return f'time budget: ~{estimate:.0f} s needed, {left:.0f} s left'
    return None

  def time_left_s(self):
    return self.budget_s - self.elapsed_s()

  def add(self, record):
    """Adds `x timm` (JAX img/s over the faster timm layout's, same model and mode), prints
    the row and rewrites the JSON."""
    timm = [r['img_per_s'] for r in self.records if r['framework'] == 'timm' and
            r['model'] == record['model'] and r['mode'] == record['mode'] and
            r.get('img_per_s')]
    record['ratio_vs_timm'] = (record['img_per_s'] / max(timm) if record['framework'] == 'jax'
                               and record.get('img_per_s') and timm else None)
    self.records.append(record)
    label = record['impl']
    if record.get('resolved_impl') not in (None, record['impl']):
      label = f"{record['impl']}={record['resolved_impl']}"
    note = record.get('error') or record.get('skipped_because') or ''
    print(harness.format_row({**record, 'impl_label': label}, COLUMNS) +
          (f'  {note}' if note else ''), flush=True)
    self.write()

  def write(self):
    self.meta['elapsed_s'] = self.elapsed_s()
    os.makedirs(os.path.dirname(os.path.abspath(self.out)), exist_ok=True)
    with open(self.out + '.tmp', 'w') as f:  # a reader never sees half a file
      json.dump({'meta': self.meta, 'records': self.records}, f, indent=1)
    os.replace(self.out + '.tmp', self.out)

  def target_summary(self, modes):
    """Per mode, the best `x timm` on the target model and the impl that got it."""
    lines = []
    for mode in modes:
      rows = [r for r in self.records if r['model'] == TARGET_MODEL and r['mode'] == mode
              and r.get('ratio_vs_timm')]
      if rows:
        best = max(rows, key=lambda r: r['ratio_vs_timm'])
        lines.append(f"{mode} {best['ratio_vs_timm']:.2f}x ({best['impl']})")
    return lines
