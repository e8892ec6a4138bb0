"""Learning-rate schedules and the optimizer of the trainable collections.

The chain built here (clipping, weight decay, AdamW or SGD) only ever sees trainable
collections: `freezing.freeze` routes frozen ones to `optax.set_to_zero()`.
"""

import jax
import jax.numpy as jnp
import optax

from spatialmix_jax.infra.errors import ConfigError

SCHEDULES = ('warmup_cosine', 'onecycle', 'piecewise_onecycle', 'constant')
OPTIMIZERS = ('adamw', 'sgd')


def validate(opt_config):
  """One-line errors for an unknown optimizer or schedule (value ranges: config_schema)."""
  if opt_config.name not in OPTIMIZERS:
    raise ConfigError(f'Unknown optimizer.name {opt_config.name!r}; choose one of {OPTIMIZERS}.')
  if opt_config.schedule not in SCHEDULES:
    raise ConfigError(f'Unknown optimizer.schedule {opt_config.schedule!r}; choose one of '
                      f'{SCHEDULES}.')


def create_schedule(opt_config, total_steps, steps_per_epoch):
  peak = opt_config.learning_rate
  name = opt_config.schedule
  if name == 'constant':
    return optax.constant_schedule(peak)
  if name == 'warmup_cosine':
    warmup = int(opt_config.warmup_epochs * steps_per_epoch)
    if warmup == 0:
      return optax.cosine_decay_schedule(peak, max(total_steps, 1))
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1))
  if name == 'onecycle':
    return optax.cosine_onecycle_schedule(
        max(total_steps, 1), peak, pct_start=opt_config.onecycle_pct_start,
        div_factor=opt_config.onecycle_div_factor,
        final_div_factor=opt_config.onecycle_final_div_factor)
  if name == 'piecewise_onecycle':
    # The ConvMixer recipes (CIFAR train.py; timm's OneCycleLRScheduler in the ImageNet repo):
    # np.interp over [0, 2/5, 4/5, 1] of training, read at the *end* of the update it
    # drives (`lr_schedule(epoch + (i + 1) / len(loader))`), so update s uses step s + 1.
    points = jnp.array([0.0, 0.4, 0.8, 1.0]) * total_steps
    values = jnp.array([0.0, peak, peak / 20, 0.0])
    return lambda step: jnp.interp(step + 1, points, values)
  raise ConfigError(f'Unknown optimizer.schedule {name!r}; choose one of {SCHEDULES}.')


def _decay_mask(opt_config):
  if opt_config.decay_biases_and_norms:
    return None
  # Biases and norm scales/offsets are the only 1-D weights; timm's recipes exclude them.
  return lambda weights: jax.tree.map(lambda w: w.ndim > 1, weights)


def create_optimizer(opt_config, schedule):
  """The optax chain applied to trainable weights."""
  name = opt_config.name
  if name not in OPTIMIZERS:
    raise ConfigError(f'Unknown optimizer.name {name!r}; choose one of {OPTIMIZERS}.')
  parts = []
  if opt_config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt_config.grad_clip_norm))
  if name == 'adamw':
    parts.append(optax.adamw(schedule, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps,
                             weight_decay=opt_config.weight_decay, mask=_decay_mask(opt_config)))
  else:
    # PyTorch's SGD adds the decay to the gradient before momentum: so do we.
    if opt_config.weight_decay > 0:
      parts.append(optax.add_decayed_weights(opt_config.weight_decay, _decay_mask(opt_config)))
    parts.append(optax.sgd(schedule, momentum=opt_config.momentum or None,
                           nesterov=opt_config.nesterov))
  return optax.chain(*parts)
