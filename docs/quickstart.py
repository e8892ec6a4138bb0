# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # spatialmix-jax quickstart
#
# *Rethinking the Role of Spatial Mixing* (Cazenavette, Julin, Lucey) splits every convolution
# into a depthwise **spatial** mixer and a pointwise **channel** mixer, and trains with one of
# them frozen at its random initialisation. This notebook runs the whole story on
# scikit-learn's bundled 8×8 handwritten digits (no download, minutes on a laptop CPU):
#
# 1. train a ConvMixer in the three modes — `full` (both mixers learned), `chans` (spatial
#    filters frozen at random), `space` (channel mixing frozen at random);
# 2. count what each mode trains;
# 3. compare their test accuracies;
# 4. look at the spectral envelopes of random, learned and smoothed depthwise filters;
# 5. attack the three models with FGSM;
# 6. undo a fixed pixel shuffle with a model whose spatial filters are frozen.
#
# Every step calls the package (`train`, `evaluation`, `freezing`, `spectral`, `report`);
# the same runs are one `python main.py ...` each (README).
#
# Environment knobs (for the test that executes this notebook): `QUICKSTART_STEPS` (train
# steps per run, default 300), `QUICKSTART_WORKDIR` (where runs go, default a temporary
# folder), `QUICKSTART_DATA_DIR` (a folder for the prepared digits, default the package's
# cache).

# %%
import json
import os
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _repository_root(start):
  """The folder holding configs/ (the notebook runs from docs/ or from the root)."""
  path = os.path.abspath(start)
  while not os.path.exists(os.path.join(path, 'configs', 'base.py')):
    if os.path.dirname(path) == path:
      raise FileNotFoundError('Run this notebook from inside the spatialmix-jax repository.')
    path = os.path.dirname(path)
  return path


sys.path.insert(0, _repository_root(os.getcwd()))

from absl import logging  # noqa: E402
from IPython.display import Image, Markdown, display  # noqa: E402

from configs import default  # noqa: E402
from configs import unshuffle_digits  # noqa: E402
from spatialmix_jax.jobs import evaluation, train  # noqa: E402
from spatialmix_jax.modeling import freezing  # noqa: E402
from spatialmix_jax.training import init_from  # noqa: E402
from spatialmix_jax.study import records, spectral  # noqa: E402

logging.set_verbosity(logging.WARNING)  # keep training logs out of the notebook

STEPS = int(os.environ.get('QUICKSTART_STEPS', '300'))
WORKDIR = os.environ.get('QUICKSTART_WORKDIR') or tempfile.mkdtemp(prefix='quickstart_')
DATA_DIR = os.environ.get('QUICKSTART_DATA_DIR') or None
MODES = ('full', 'chans', 'space')
print(f'{STEPS} steps per run, runs in {WORKDIR}')

# %% [markdown]
# ## 1. Train full / chans / space
#
# `configs/default.py` is a ConvMixer (width 64, depth 4, patch 1) on the digits; here with
# 5×5 depthwise kernels, so that the spectra below have some structure. Each run writes
# `config.json`, Orbax checkpoints and `results.json` into its own workdir.

# %%
def digits_config(mode):
  config = default.get_config()
  config.mode = mode
  config.data_dir = DATA_DIR
  config.model.kernel_size = 5
  config.num_train_steps = STEPS
  config.log_every_steps = max(1, STEPS // 4)
  config.checkpoint_every_steps = STEPS
  return config


results = {}
for mode in MODES:
  results[mode] = train.train_and_evaluate(digits_config(mode), os.path.join(WORKDIR, 'modes',
                                                                             mode))
  r = results[mode]
  print(f"{mode:>5}: test accuracy {r['test_accuracy']:.3f} on {r['num_test_examples']} digits, "
        f"frozen collections {r['frozen_collections'] or 'none'} unchanged: "
        f"{r['frozen_unchanged']}, {r['wall_time_s']:.0f} s")

# %% [markdown]
# ## 2. What each mode trains
#
# `freezing.parameter_report` counts the weights per variable collection: `stem` (the patch
# embedding, frozen in both ablations), `spatial` (depthwise kernels), `channel` (pointwise
# kernels) and `params` (BatchNorm and the head). Frozen collections get no gradient, no
# optimizer state and no weight decay.

# %%
rows = ['| mode | trainable | frozen | stem | spatial | channel | params |', '|---|---|---|---|---|---|---|']
for mode in MODES:
  weights, _, _ = init_from.read_weights(os.path.join(WORKDIR, 'modes', mode))
  counts = freezing.parameter_report(weights, results[mode]['frozen_collections'])
  assert counts == results[mode]['params']  # what results.json recorded
  per = counts['per_collection']
  rows.append(f"| {mode} | {counts['trainable']:,} | {counts['frozen']:,} | {per['stem']:,} | "
              f"{per['spatial']:,} | {per['channel']:,} | {per['params']:,} |")
display(Markdown('\n'.join(rows)))

# %% [markdown]
# ## 3. Test accuracy by mode
#
# The paper's headline: learning only the channel mixing (`chans`) on top of frozen random
# spatial filters comes close to learning both (`full`), and clearly ahead of learning only
# the spatial filters (`space`). On these small digits all three do well: mind the y axis,
# where one of the 360 test digits is 0.0028.

# %%
figures = os.path.join(WORKDIR, 'figures')
os.makedirs(figures, exist_ok=True)
cells = records.load_cells(os.path.join(WORKDIR, 'modes'))
records.figure(cells, figures, 'modes', 'Digits: test accuracy by mode', 'mode',
              'test_accuracy', 'test accuracy')
display(Image(filename=os.path.join(figures, 'modes.png')))

# %% [markdown]
# ## 4. Spectral envelopes: random vs learned vs smoothed filters
#
# Each panel is one bank of 64 depthwise 5×5 filters, zero frequency at the centre. The
# envelope of a filter bank is, at each frequency, the largest response of any of its
# filters; *coverage* is the fraction of frequencies where it reaches half its peak (§3.1).
# A bank of random filters covers the spectrum, so the channel mixer can combine them into
# any filter; smoothing them (`spatial_init=smooth`) removes the high frequencies.

# %%
kernel_size, width = 5, 64
learned = {mode: spectral.depthwise_kernels(init_from.read_weights(
    os.path.join(WORKDIR, 'modes', mode))[0]) for mode in ('full', 'space')}
banks = {
    'random (the frozen init)': spectral.random_bank(width, kernel_size),
    'learned, full, block 1': learned['full']['DepthwiseConv_0'],
    'learned, space, block 1': learned['space']['DepthwiseConv_0'],
    'smoothed random, σ=1': spectral.random_bank(width, kernel_size, spatial_init='smooth',
                                                 smooth_sigma=1.0),
}
envelopes = spectral.analyse_banks(banks, size=128)
spectral.plot_envelopes(envelopes, os.path.join(figures, 'envelopes.png'), title='')
display(Image(filename=os.path.join(figures, 'envelopes.png')))
for name, (_, cover) in envelopes.items():
  print(f'{name}: coverage {cover:.2f}')

# %% [markdown]
# ## 5. FGSM: accuracy vs ε
#
# `--job=eval` with `eval.attacks=fgsm` evaluates each trained model on FGSM images for
# every ε (in units of 1/255) and adds the accuracies to its `eval.json`.

# %%
robustness = {}
for mode in MODES:
  config = digits_config(mode)
  config.eval.attacks = 'fgsm'
  config.eval.epsilons = '0,2,4,8,16,32'
  record = evaluation.evaluate(config, os.path.join(WORKDIR, 'modes', mode))
  robustness[mode] = record['robustness']['fgsm']
cells = records.load_cells(os.path.join(WORKDIR, 'modes'))
records.figure(cells, figures, 'fgsm', 'Digits: accuracy under FGSM', 'epsilon',
              'attacked_accuracy', 'test accuracy')
display(Image(filename=os.path.join(figures, 'fgsm.png')))
print(json.dumps(robustness, indent=1))

# %% [markdown]
# ## 6. Un-shuffling pixels with frozen spatial filters
#
# One fixed random permutation scrambles the pixels of every image; a patch-1 ConvMixer
# learns to put them back (§4.4). Here in `chans` mode: its spatial filters stay random.
# Rows: ground truth, scrambled input, reconstruction.

# %%
config = unshuffle_digits.get_config()
config.data_dir = DATA_DIR
config.mode = 'chans'
config.model.width = 64
config.model.depth = 4  # 4 × (5 - 1) + 1 = 17 ≥ 2 × 8 - 1: every pixel sees every other
config.num_train_steps = STEPS
config.log_every_steps = max(1, STEPS // 4)
config.checkpoint_every_steps = STEPS
unshuffle_dir = os.path.join(WORKDIR, 'unshuffle')
unshuffled = train.train_and_evaluate(config, unshuffle_dir)
print(f"test PSNR {unshuffled['test_psnr']:.2f} dB, scrambled input "
      f"{unshuffled['scrambled_psnr']:.2f} dB")
display(Image(filename=os.path.join(unshuffle_dir, 'unshuffle.png')))

# %%
# What the notebook's test reads back.
summary = {'steps': STEPS,
           'test_accuracy': {mode: results[mode]['test_accuracy'] for mode in MODES},
           'frozen_unchanged': {mode: results[mode]['frozen_unchanged'] for mode in MODES},
           'fgsm': robustness,
           'coverage': {name: cover for name, (_, cover) in envelopes.items()},
           'unshuffle_psnr': unshuffled['test_psnr'],
           'scrambled_psnr': unshuffled['scrambled_psnr']}
with open(os.path.join(WORKDIR, 'summary.json'), 'w') as f:
  json.dump(summary, f, indent=1, ensure_ascii=False)
