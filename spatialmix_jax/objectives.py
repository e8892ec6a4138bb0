"""What a model is trained and evaluated on: per-task inputs, targets, loss and metrics.

`classification`: images → logits, softmax cross-entropy (optionally label-smoothed or on soft
labels from mixup/cutmix), accuracy. `unshuffle`: scrambled images → images, MSE, PSNR.

Metrics are returned as masked *sums* plus a `count`, so evaluation can add them up over
batches, devices and processes and divide once: padded examples never count.
"""

import jax.numpy as jnp
import optax

from spatialmix_jax import unshuffle

TASKS = ('classification', 'unshuffle')


def inputs_and_targets(task, batch, permutation=None):
  if task == 'classification':
    return batch['image'], batch['label']
  return unshuffle.scramble(batch['image'], permutation), batch['image']


def _soft_targets(targets, num_classes, label_smoothing):
  if targets.ndim == 1:
    targets = jnp.eye(num_classes, dtype=jnp.float32)[targets]
  if label_smoothing > 0:
    targets = optax.smooth_labels(targets, label_smoothing)
  return targets


def per_example(task, outputs, targets, *, num_classes=None, label_smoothing=0.0):
  """Per-example loss and metrics (all float32, shape (N,))."""
  outputs = outputs.astype(jnp.float32)
  if task == 'classification':
    soft = _soft_targets(targets, num_classes, label_smoothing)
    loss = optax.softmax_cross_entropy(outputs, soft)
    hard = targets if targets.ndim == 1 else jnp.argmax(targets, -1)
    return loss, {'accuracy': (jnp.argmax(outputs, -1) == hard).astype(jnp.float32)}
  mse = jnp.mean(jnp.square(outputs - targets), axis=(1, 2, 3))
  # Per-image PSNR, averaged over images (a zero error is clipped to 1e-10 MSE = 100 dB).
  return mse, {'psnr': unshuffle.psnr(jnp.maximum(mse, 1e-10))}


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
