"""APGD-CE (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Algorithm 1) under L∞, in pure JAX: one jit-able function
of a batch, every example with its own step size, best point and restart.

Why this attack: the paper's PGD-2 (step ε, no random start) can be fooled by a masked or
noisy gradient; APGD needs no step size tuned to the model, keeps the best point it has seen
and halves its step where progress stalls, so it is the usual check that a robustness gain is
not gradient masking.

The algorithm, N = `steps` iterations from x⁽⁰⁾ (a uniform random point of the ε-ball whose
largest coordinate is on its surface, as the authors' code starts):
  z⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + η⁽ᵏ⁾ sign ∇f(x⁽ᵏ⁾)),
  x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α (z⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾)),  α = 0.75 (1 at k = 0),
P the projection onto the ε-ball ∩ [0, 1], f the per-example cross-entropy, η⁽⁰⁾ = 2ε. At each
checkpoint w_j = ⌈p_j N⌉ (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06))
the step is halved, and the iterate restarted from the best point x_max (with its gradient),
when
  condition 1: fewer than ρ = 0.75 of the w_j − w_{j−1} steps since w_{j−1} raised the loss
               (Σ 1[f(x⁽ⁱ⁺¹⁾) > f(x⁽ⁱ⁾)] < ρ (w_j − w_{j−1}), a strict < as the paper writes it;
               the authors' code uses ≤), or
  condition 2: the step was not halved at w_{j−1} and the best loss has not risen since then
               (η⁽ʷʲ⁻¹⁾ = η⁽ʷʲ⁾ and f_max⁽ʷʲ⁻¹⁾ = f_max⁽ʷʲ⁾; at w_1 the step is still η⁽⁰⁾, so the
               paper lets it fire there, which the authors' code does not).
The check sits where the authors' code puts it: after x⁽ʷʲ⁾ and its loss are known, a restart
replacing x⁽ʷʲ⁾ itself (so the next step's rise is counted against f(x_max)). w_j rounds up as
the paper says; the authors' code rounds 0.22N, 0.03N and 0.06N down, the same for N = 100. Returned per example: the first iterate the model misclassifies (the
clean image when that already is, as the authors' `perturb` leaves such images alone), else the
highest-loss point. So the attacked accuracy is never above the clean accuracy, nor above that
at the random start, and at ε = 0 it is the clean accuracy exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np

RHO = 0.75  # condition 1: the share of loss-raising steps below which the step is halved
MOMENTUM = 0.75  # α
INITIAL_STEP = 2.0  # η⁽⁰⁾ in units of ε


def checkpoint_fractions():
  """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), while p_j ≤ 1; in
  hundredths, so that ⌈p_j N⌉ is exact (0.22 + 0.19 is 0.41000000000000003 in floats)."""
  fractions, previous, current = [0], 0, 22
  while current <= 100:
    fractions.append(current)
    previous, current = current, current + max(current - previous - 3, 6)
  return fractions


def checkpoints(steps):
  """The distinct iterations w_j = ⌈p_j N⌉ for N = `steps`, w_0 = 0 included."""
  return sorted({-(-p * steps // 100) for p in checkpoint_fractions()})


def _schedule(steps):
  """Per iteration i (which computes x⁽ⁱ⁺¹⁾): whether i + 1 is a checkpoint, and the number of
  steps since the previous one (0 where it is not)."""
  is_check, window = np.zeros(steps, bool), np.zeros(steps, np.int32)
  marks = checkpoints(steps)
  for previous, current in zip(marks, marks[1:]):
    if 1 <= current <= steps:
      is_check[current - 1], window[current - 1] = True, current - previous
  return is_check, window


def halves(is_check, increases, window, halved_at_check, best_loss, best_at_check):
  """Whether each example halves its step (and restarts from its best point) now: at a
  checkpoint, when condition 1 (fewer than ρ·window of the steps since the last checkpoint
  raised the loss) or condition 2 (no halving at the last checkpoint and no gain in the best
  loss since) holds."""
  stalled = increases < RHO * window
  no_gain = jnp.logical_and(jnp.logical_not(halved_at_check), best_loss <= best_at_check)
  return jnp.logical_and(is_check, jnp.logical_or(stalled, no_gain))


def _per_example(values, like):
  """(N,) → (N, 1, 1, …) to broadcast against images `like`."""
  return values.reshape(values.shape + (1,) * (like.ndim - 1))


def apgd_trace(loss_fn, images, epsilon, *, steps, key):
  """(adversarial images, trace) of APGD-CE; trace holds per iteration (axis 0, `steps` long)
  and per example: the iterate's `loss`, the best `best_loss` so far, the `step_size` after the
  iteration's checkpoint test, and whether it `halved`; plus the `start` x⁽⁰⁾ and its
  `start_loss`.

  `loss_fn(images)` → (per-example loss (N,), per-example correct (N,) bool). `epsilon` may be
  traced (one compilation serves every ε); `steps` must be static.
  """
  def project(x):
    return jnp.clip(jnp.clip(x, images - epsilon, images + epsilon), 0.0, 1.0)

  def evaluate(x):
    def objective(x):
      loss, correct = loss_fn(x)
      return jnp.sum(loss), (loss, correct)
    (_, (loss, correct)), grad = jax.value_and_grad(objective, has_aux=True)(x)
    return loss, correct, grad

  def first_miss(found, first, x, correct):
    """Keeps the first misclassified point of each example."""
    missed = jnp.logical_not(correct)
    first = jnp.where(_per_example(jnp.logical_and(missed, jnp.logical_not(found)), x), x, first)
    return jnp.logical_or(found, missed), first

  batch = images.shape[0]
  _, clean_correct = loss_fn(images)
  noise = jax.random.uniform(key, images.shape, images.dtype, -1.0, 1.0)
  largest = jnp.max(jnp.abs(noise).reshape(batch, -1), axis=1)
  x0 = project(images + epsilon * noise / _per_example(largest + 1e-12, noise))
  loss0, correct0, grad0 = evaluate(x0)
  found, first = first_miss(jnp.logical_not(clean_correct), images, x0, correct0)

  state = {
      'x': x0, 'x_prev': x0, 'grad': grad0, 'loss': loss0,
      'step': jnp.full((batch,), INITIAL_STEP, jnp.float32) * epsilon,
      'x_max': x0, 'grad_max': grad0, 'loss_max': loss0,
      'increases': jnp.zeros((batch,), jnp.int32),
      'loss_max_at_check': loss0, 'halved_at_check': jnp.zeros((batch,), bool),
      'found': found, 'first': first,
  }

  def iteration(s, inputs):
    index, is_check, window = inputs
    momentum = jnp.where(index == 0, 1.0, MOMENTUM)
    x = s['x']
    z = project(x + _per_example(s['step'], x) * jnp.sign(s['grad']))
    x_new = project(x + momentum * (z - x) + (1.0 - momentum) * (x - s['x_prev']))
    loss, correct, grad = evaluate(x_new)
    found, first = first_miss(s['found'], s['first'], x_new, correct)
    increases = s['increases'] + (loss > s['loss']).astype(jnp.int32)
    improved = loss > s['loss_max']
    wide = _per_example(improved, x)
    x_max = jnp.where(wide, x_new, s['x_max'])
    grad_max = jnp.where(wide, grad, s['grad_max'])
    loss_max = jnp.where(improved, loss, s['loss_max'])

    halve = halves(is_check, increases, window, s['halved_at_check'], loss_max,
                   s['loss_max_at_check'])
    step = jnp.where(halve, s['step'] / 2.0, s['step'])
    restart = _per_example(halve, x)
    new_state = {
        'x': jnp.where(restart, x_max, x_new), 'x_prev': x,
        'grad': jnp.where(restart, grad_max, grad), 'loss': jnp.where(halve, loss_max, loss),
        'step': step, 'x_max': x_max, 'grad_max': grad_max, 'loss_max': loss_max,
        'increases': jnp.where(is_check, 0, increases),
        'loss_max_at_check': jnp.where(is_check, loss_max, s['loss_max_at_check']),
        'halved_at_check': jnp.where(is_check, halve, s['halved_at_check']),
        'found': found, 'first': first,
    }
    return new_state, {'loss': loss, 'best_loss': loss_max, 'step_size': step, 'halved': halve}

  is_check, window = _schedule(steps)
  state, trace = jax.lax.scan(
      iteration, state, (jnp.arange(steps), jnp.asarray(is_check), jnp.asarray(window)))
  trace['start'], trace['start_loss'] = x0, loss0
  adversarial = jnp.where(_per_example(state['found'], images), state['first'], state['x_max'])
  return adversarial, trace


def apgd(loss_fn, images, epsilon, *, steps, key):
  """The APGD-CE adversarial images (see `apgd_trace`)."""
  return apgd_trace(loss_fn, images, epsilon, steps=steps, key=key)[0]
