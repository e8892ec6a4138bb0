"""Spectral coverage of depthwise filter banks (paper §3.1).

The *envelope* of a bank is, at every frequency, the largest magnitude response of any of its
filters: max_f |FFT2(filter_f zero-padded to size × size)|, zero frequency centred. A bank
that "covers" the spectrum lets the channel mixer build any filter from it.

*Coverage* condenses an envelope into one number: the fraction of the size × size frequency
plane where the envelope reaches at least `threshold` (default 0.5, i.e. −6 dB) of its own
peak. A delta filter covers 1.0; a single random or low-pass filter leaves gaps.

  python -m spatialmix_jax.study.spectral --workdir=/tmp/spatialmix/digits

writes WORKDIR/spectral/: random_banks.png, trained_layers.png, random_vs_smooth.png and
coverage.json (per bank: coverage at the threshold, the bank's shape).
"""

import json
import os
import re

import jax
import numpy as np

from spatialmix_jax.infra import errors
from spatialmix_jax.modeling import filters
from spatialmix_jax.infra import plotting

DEFAULT_SIZE = 512
DEFAULT_THRESHOLD = 0.5


def as_bank(kernels):
  """(k, k, N) from a depthwise kernel (k, k, 1, N), a bank (k, k, N) or one filter (k, k)."""
  kernels = np.asarray(kernels, np.float64)
  if kernels.ndim == 2:
    return kernels[..., None]
  if kernels.ndim == 4:
    return kernels.reshape(kernels.shape[:2] + (-1,))
  if kernels.ndim != 3:
    raise ValueError(f'Expected filters of shape (k, k), (k, k, N) or (k, k, 1, N), got '
                     f'{kernels.shape}.')
  return kernels


def envelope(kernels, size=DEFAULT_SIZE, chunk=64):
  """(size, size) max over filters of |FFT2| (zero-padded, fftshift-ed: DC at the centre)."""
  bank = as_bank(kernels)
  if max(bank.shape[:2]) > size:
    raise errors.ConfigError(f'size {size} is smaller than the {bank.shape[:2]} filters.')
  result = np.zeros((size, size))
  for start in range(0, bank.shape[-1], chunk):  # bounded memory for wide banks
    spectra = np.abs(np.fft.fft2(bank[..., start:start + chunk], s=(size, size), axes=(0, 1)))
    result = np.maximum(result, spectra.max(axis=-1))
  return np.fft.fftshift(result)


def coverage(env, threshold=DEFAULT_THRESHOLD):
  """Fraction of the frequency plane where `env` ≥ threshold × its peak."""
  if not 0.0 < threshold <= 1.0:
    raise errors.ConfigError(f'threshold must be in (0, 1], got {threshold}.')
  peak = env.max()
  if peak <= 0:
    return 0.0
  return float(np.mean(env >= threshold * peak))


def random_bank(num_filters, kernel_size, seed=0, spatial_init='random', smooth_sigma=1.0,
                init_scheme='torch'):
  """A (k, k, N) bank drawn like a model's depthwise init."""
  init = filters.kernel_init(spatial_init, init_scheme, smooth_sigma)
  kernel = init(jax.random.PRNGKey(seed), (kernel_size, kernel_size, 1, num_filters))
  return as_bank(jax.device_get(kernel))


def _natural_key(text):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', text)]


def depthwise_kernels(weights):
  """{layer path: (k, k, N) bank} of every depthwise kernel in `weights['spatial']`, in depth
  order (DepthwiseConv_2 before DepthwiseConv_10)."""
  banks = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(weights.get('spatial', {}))[0]:
    keys = [str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path]
    if keys[-1] == 'kernel':
      banks['/'.join(keys[:-1])] = as_bank(jax.device_get(leaf))
  return dict(sorted(banks.items(), key=lambda item: _natural_key(item[0])))


def plot_envelopes(named_envelopes, path, title, columns=4):
  plt = plotting.pyplot()
  rows = -(-len(named_envelopes) // columns)
  columns = min(columns, len(named_envelopes))
  fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows + 0.4),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, (name, (env, cov)) in zip(axes.flat, named_envelopes.items()):
    # Each envelope relative to its own peak: the figure compares shapes, not gains.
    ax.imshow(env / max(env.max(), 1e-12), cmap='magma', vmin=0.0, vmax=1.0,
              extent=(-0.5, 0.5, -0.5, 0.5))
    ax.set_title(f'{name}\ncoverage {cov:.2f}', fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def analyse_banks(banks, size=DEFAULT_SIZE, threshold=DEFAULT_THRESHOLD):
  """{name: (envelope, coverage)} for {name: bank}."""
  results = {}
  for name, bank in banks.items():
    env = envelope(bank, size)
    results[name] = (env, coverage(env, threshold))
  return results


def _record(banks, analysed):
  return {name: {'coverage': analysed[name][1], 'filters': int(banks[name].shape[-1]),
                 'kernel_size': list(banks[name].shape[:2])} for name in banks}


def run(workdir, size=DEFAULT_SIZE, threshold=DEFAULT_THRESHOLD, max_random_filters=64,
        smooth_sigmas=(0.5, 1.0, 2.0)):
  """Figures + coverage.json under WORKDIR/spectral/ for the run trained in `workdir`."""
  from spatialmix_jax.jobs import evaluation  # pylint: disable=g-import-not-at-top
  from spatialmix_jax.config import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  config = evaluation.load_saved_config(workdir)
  experiment = experiment_lib.create_experiment(config)
  if 'spatial' not in experiment.collections:
    raise errors.ConfigError(f'The model in {workdir!r} ({config.model.name}) has no depthwise '
                             '(spatial) filters; spectral analysis needs a separable model '
                             '(convmixer, unshuffle_convmixer, sep_resnet_*).')
  state, step = evaluation.restore_for_eval(config, workdir, experiment)
  out = os.path.join(workdir, 'spectral')
  os.makedirs(out, exist_ok=True)
  k = config.model.kernel_size
  record = {'size': size, 'threshold': threshold, 'step': int(step),
            'definition': 'fraction of the frequency plane where the envelope (max over '
                          'filters of |FFT2|) is >= threshold x its peak'}

  counts = [2 ** i for i in range(int(np.log2(max_random_filters)) + 1)]
  random_banks = {f'{n} random': random_bank(n, k, seed=config.seed) for n in counts}
  analysed = analyse_banks(random_banks, size, threshold)
  plot_envelopes(analysed, os.path.join(out, 'random_banks.png'),
                  f'Envelopes of random {k}x{k} banks')
  record['random_banks'] = _record(random_banks, analysed)

  trained = depthwise_kernels(state.weights)
  analysed = analyse_banks(trained, size, threshold)
  plot_envelopes(analysed, os.path.join(out, 'trained_layers.png'),
                  f'Depthwise filters per layer, step {step} ({config.mode})')
  record['trained_layers'] = _record(trained, analysed)

  width = next(iter(trained.values())).shape[-1]
  compared = {'random': random_bank(width, k, seed=config.seed)}
  for sigma in smooth_sigmas:
    compared[f'smooth σ={sigma:g}'] = random_bank(width, k, seed=config.seed,
                                                  spatial_init='smooth', smooth_sigma=sigma)
  analysed = analyse_banks(compared, size, threshold)
  plot_envelopes(analysed, os.path.join(out, 'random_vs_smooth.png'),
                  f'{width} random vs smoothed {k}x{k} filters')
  record['random_vs_smooth'] = _record(compared, analysed)

  with open(os.path.join(out, 'coverage.json'), 'w') as f:
    json.dump(record, f, indent=2, ensure_ascii=False)
  return record


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  from spatialmix_jax.config import cli  # pylint: disable=g-import-not-at-top
  with cli.user_errors_as_one_line():
    record = run(FLAGS.workdir, FLAGS.size, FLAGS.threshold)
  print(json.dumps({name: {b: v['coverage'] for b, v in banks.items()}
                    for name, banks in record.items() if isinstance(banks, dict)
                    and name != 'definition'}, indent=1, ensure_ascii=False))


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'A trained workdir (config.json + checkpoints/).')
  flags.DEFINE_integer('size', DEFAULT_SIZE, 'FFT size the filters are zero-padded to.')
  flags.DEFINE_float('threshold', DEFAULT_THRESHOLD,
                     'Coverage counts frequencies whose envelope is >= threshold x its peak.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
