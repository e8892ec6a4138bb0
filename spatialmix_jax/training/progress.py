"""Honest progress of the training loop, and where its time goes.

The loop thread's wall time is split into three parts:
  input:   waiting for the next batch from tf.data and putting it on the devices;
  compute: dispatching the step, and at each report waiting for the devices to finish it;
  host:    everything else on the loop thread (metric transfer and logging, checkpoints,
           evaluation during training).
Steps/s and the ETA are measured at each report on *completed* steps: the report first waits
for the step's metrics, so asynchronous dispatch cannot make a window look faster than the
devices are. The train step is compiled before the loop starts, so no window pays for it.

`summary()` covers the steps after the first report window (all steps when there is only one):
the first window also fills tf.data's cache and shuffle buffer and warms up allocators, which a
steady-state figure should not include.
"""

import time

PARTS = ('input', 'compute', 'host')


def _span(step, now):
  return {'step': step, 'time': now, **{part: 0.0 for part in PARTS}}


class LoopClock:
  """Charges the loop thread's time to the parts above and reports per window."""

  def __init__(self, start_step, total_steps, batch_size):
    self._total_steps = total_steps
    self._batch_size = batch_size
    self._last = time.perf_counter()
    self._window = _span(start_step, self._last)
    self._whole = _span(start_step, self._last)
    self._steady = None  # from the end of the first window on
    self.compile_seconds = 0.0

  def charge(self, part):
    """Adds the time since the last charge to `part`."""
    now = time.perf_counter()
    for span in (self._window, self._whole, self._steady):
      if span is not None:
        span[part] += now - self._last
    self._last = now

  def charge_compile(self):
    """Sets everything since the loop began apart as compilation (the first batch included),
    outside every window: the windows start now."""
    now = time.perf_counter()
    self.compile_seconds += now - self._whole['time']
    self._last = now
    self._window = _span(self._window['step'], now)
    self._whole = _span(self._whole['step'], now)

  def report(self, step):
    """Rates of the window ending at `step`, whose metrics the caller has waited for."""
    seconds = max(self._last - self._window['time'], 1e-9)
    rate = (step - self._window['step']) / seconds
    line = {
        'steps_per_sec': rate,
        'images_per_sec': rate * self._batch_size,
        'eta_minutes': (self._total_steps - step) / max(rate, 1e-9) / 60,
        **{f'{part}_fraction': self._window[part] / seconds for part in PARTS},
    }
    self._window = _span(step, self._last)
    if self._steady is None:
      self._steady = _span(step, self._last)
    return line

  def summary(self, step):
    """Steady-state rate and time split up to `step` (see the module docstring)."""
    span = self._steady if self._steady and step > self._steady['step'] else self._whole
    seconds = self._last - span['time']
    steps = step - span['step']
    if steps <= 0 or seconds <= 0:
      return None
    return {
        'steps': steps,
        'seconds': round(seconds, 3),
        'images_per_sec': round(steps * self._batch_size / seconds, 2),
        'compile_seconds': round(self.compile_seconds, 3),
        **{f'{part}_seconds': round(span[part], 3) for part in PARTS},
    }
