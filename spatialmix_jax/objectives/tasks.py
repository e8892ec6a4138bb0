"""What a model is trained and evaluated on, one object per task: its inputs and targets, its
per-example loss and metrics, the fields it adds to results.json, its end-of-run figure and the
attacks it allows.

`classification`: images → logits, softmax cross-entropy (optionally label-smoothed, or on soft
labels from mixup/cutmix), accuracy. `unshuffle` (paper §4.4): scrambled images → images, MSE,
PSNR, beside the PSNR of the scrambled input itself.

Metrics are returned per example and reduced to masked *sums* plus a `count` (`summed`), so
evaluation adds them up over batches, devices and processes and divides once (`averaged`):
padded examples never count. The registry `TASKS` is the only place that reads `config.task`.
"""

import dataclasses
import os
from typing import Any

import jax.numpy as jnp
import optax

from spatialmix_jax.infra.errors import CheckpointError
from spatialmix_jax.infra.errors import ConfigError
from spatialmix_jax.objectives import unshuffle

ATTACKS = ('fgsm', 'pgd', 'pgd20', 'apgd')  # objectives/attacks.py says what each is


@dataclasses.dataclass(frozen=True, eq=False)
class Classification:
  """Class labels from logits; the only task adversarial attacks apply to."""
  num_classes: int
  label_smoothing: float = 0.0

  name = 'classification'
  model_output = 'logits'  # what models.py says a model returns
  has_labels = True  # mixup and cutmix mix labels
  attacks = ATTACKS
  metric = 'accuracy'

  def inputs_and_targets(self, batch):
    return batch['image'], batch['label']

  def per_example(self, outputs, targets, training=True):
    """Per-example loss and metrics (float32, shape (N,)). Label smoothing shapes the training
    objective only: the test loss is plain cross-entropy."""
    outputs = outputs.astype(jnp.float32)
    soft = targets if targets.ndim > 1 else jnp.eye(self.num_classes, dtype=jnp.float32)[targets]
    if training and self.label_smoothing > 0:
      soft = optax.smooth_labels(soft, self.label_smoothing)
    loss = optax.softmax_cross_entropy(outputs, soft)
    hard = targets if targets.ndim == 1 else jnp.argmax(targets, -1)
    return loss, {'accuracy': (jnp.argmax(outputs, -1) == hard).astype(jnp.float32)}

  def result_fields(self, means):
    return {'test_accuracy': means['accuracy']}

  def check_checkpoint_config(self, config, saved_config, workdir):
    del config, saved_config, workdir  # nothing beyond the architecture, checked on restore

  def save_figure(self, model, variables, eval_data, workdir):
    del model, variables, eval_data, workdir  # accuracy needs no picture


@dataclasses.dataclass(frozen=True, eq=False)
class Unshuffle:
  """Undo one fixed permutation of pixel positions (`unshuffle.py`)."""
  permutation: Any  # (H*W,) int array
  permutation_seed: int = 0

  name = 'unshuffle'
  model_output = 'image'
  has_labels = False
  attacks = ()
  metric = 'psnr'

  def inputs_and_targets(self, batch):
    return unshuffle.scramble(batch['image'], self.permutation), batch['image']

  def per_example(self, outputs, targets, training=True):
    outputs = outputs.astype(jnp.float32)
    mse = jnp.mean(jnp.square(outputs - targets), axis=(1, 2, 3))
    # Per-image PSNR, averaged over images (a zero error is clipped to 1e-10 MSE = 100 dB).
    metrics = {'psnr': unshuffle.psnr(jnp.maximum(mse, 1e-10))}
    if not training:
      # The do-nothing baseline, so results show the gain over the scrambled input.
      metrics['scrambled_psnr'] = unshuffle.scrambled_psnr(targets, self.permutation)
    return mse, metrics

  def result_fields(self, means):
    return {'test_psnr': means['psnr'], 'scrambled_psnr': means['scrambled_psnr']}

  def check_checkpoint_config(self, config, saved_config, workdir):
    """A model only undoes the permutation it was trained on."""
    del config
    saved = saved_config.unshuffle.permutation_seed
    if saved != self.permutation_seed:
      raise CheckpointError(
          f'unshuffle.permutation_seed {self.permutation_seed} differs from the seed {saved} the '
          f'checkpoint in {workdir!r} was trained with; pass '
          f'--config.unshuffle.permutation_seed={saved}.')

  def save_figure(self, model, variables, eval_data, workdir):
    unshuffle.save_figure(model, self.permutation, variables, eval_data,
                          os.path.join(workdir, 'unshuffle.png'))


TASKS = {'classification': Classification, 'unshuffle': Unshuffle}


def get_class(name):
  if name not in TASKS:
    raise ConfigError(f'Unknown task {name!r}; choose one of {tuple(TASKS)}.')
  return TASKS[name]


def create_task(config, num_classes, image_shape):
  """The task object of `config.task` for a dataset of `num_classes` and `image_shape`."""
  cls = get_class(config.task)
  if cls is Unshuffle:
    seed = config.unshuffle.permutation_seed
    return Unshuffle(unshuffle.pixel_permutation(seed, image_shape[0], image_shape[1]), seed)
  return Classification(num_classes, config.augment.label_smoothing)


def summed(loss, metrics, mask=None):
  """Masked sums of the per-example values, with the example `count`."""
  if mask is None:
    mask = jnp.ones_like(loss)
  sums = {name: jnp.sum(value * mask) for name, value in metrics.items()}
  sums['loss'] = jnp.sum(loss * mask)
  sums['count'] = jnp.sum(mask)
  return sums


def averaged(sums):
  """Turns accumulated sums into means; `count` is kept as an integer."""
  count = float(sums['count'])
  means = {k: float(v) / max(count, 1.0) for k, v in sums.items() if k != 'count'}
  means['count'] = int(round(count))
  return means
