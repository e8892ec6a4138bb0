"""APGD-CE (objectives/apgd.py) on cases checked by hand: the paper's checkpoints, linear models
whose worst-case L∞ perturbation is known, and the step-size rule read off a trace."""

import functools
import itertools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import REPO_ROOT
from spatialmix_jax.objectives import apgd


def test_checkpoints_follow_the_papers_formula():
  # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), worked by hand:
  # 0.22 + 0.19 = 0.41, + 0.16 = 0.57, + 0.13 = 0.70, + 0.10 = 0.80, + 0.07 = 0.87,
  # + 0.06 = 0.93, + 0.06 = 0.99; the next (1.05) is past the end.
  assert apgd.checkpoint_fractions() == [0, 22, 41, 57, 70, 80, 87, 93, 99]
  assert apgd.checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
  # ⌈p_j · 10⌉: 2.2 → 3, 4.1 → 5, 5.7 → 6, 7.0 → 7, 8.0 → 8, 8.7 → 9, 9.3 and 9.9 → 10.
  assert apgd.checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]


def _linear(weights, bias, labels):
  def loss_fn(images):
    logits = images @ weights + bias
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss, jnp.argmax(logits, -1) == labels
  return loss_fn


def _run(loss_fn, images, epsilon, steps=100, seed=0):
  return jax.jit(functools.partial(apgd.apgd_trace, loss_fn, steps=steps))(
      images, jnp.float32(epsilon), key=jax.random.PRNGKey(seed))


def _data(rng, examples, dims):
  images = rng.uniform(size=(examples, dims)).astype(np.float32)
  images[: examples // 4, 0] = 0.0  # on the pixel range's edges: the clip must bind
  images[examples // 4: examples // 2, 1] = 1.0
  return jnp.asarray(images)


def test_two_class_linear_model_reaches_the_closed_form_worst_case():
  # CE of logits Wx + b with two classes falls with the margin (w_y − w_o)·x, which is linear:
  # its maximum over the box [x − ε, x + ε] ∩ [0, 1] is x − ε·sign(w_y − w_o), clipped.
  rng = np.random.default_rng(0)
  weights = jnp.asarray(rng.normal(size=(6, 2)) * 2, jnp.float32)
  bias = jnp.asarray(rng.normal(size=2), jnp.float32)
  images = _data(rng, 64, 6)
  labels = jnp.asarray(rng.integers(0, 2, 64))
  loss_fn, epsilon = _linear(weights, bias, labels), 0.05
  direction = np.sign(np.asarray(weights)[:, np.asarray(labels)].T
                      - np.asarray(weights)[:, 1 - np.asarray(labels)].T)
  worst = np.clip(np.asarray(images) - epsilon * direction, 0.0, 1.0)
  worst_loss = np.asarray(loss_fn(jnp.asarray(worst))[0])
  adversarial, trace = _run(loss_fn, images, epsilon)
  np.testing.assert_allclose(trace['best_loss'][-1], worst_loss, rtol=1e-5, atol=1e-6)
  # The returned point is that worst case, or misclassified (the first such iterate).
  loss, correct = loss_fn(adversarial)
  robust = np.asarray(correct)
  np.testing.assert_allclose(np.asarray(loss)[robust], worst_loss[robust], rtol=1e-5)
  assert np.all(np.asarray(worst_loss)[~robust] >= np.log(2.0) - 1e-6)  # past the boundary
  assert np.abs(np.asarray(adversarial) - np.asarray(images)).max() <= epsilon + 1e-6


def test_many_class_linear_model_finds_the_best_vertex():
  # CE of a linear model is convex in x, so its maximum over the box is at one of its 2^d
  # vertices: enumerate them. Signed-gradient ascent may stop at a lesser vertex; it must never
  # pass the true maximum, and reach it for almost every example.
  rng = np.random.default_rng(1)
  dims, classes, examples, epsilon = 4, 3, 64, 0.1
  weights = jnp.asarray(rng.normal(size=(dims, classes)) * 3, jnp.float32)
  bias = jnp.asarray(rng.normal(size=classes), jnp.float32)
  images = _data(rng, examples, dims)
  loss_fn = _linear(weights, bias, jnp.asarray(rng.integers(0, classes, examples)))
  low = np.clip(np.asarray(images) - epsilon, 0, 1)
  high = np.clip(np.asarray(images) + epsilon, 0, 1)
  best = np.full(examples, -np.inf, np.float32)
  for corner in itertools.product([False, True], repeat=dims):
    vertex = np.where(np.array(corner), high, low)
    best = np.maximum(best, np.asarray(loss_fn(jnp.asarray(vertex))[0]))
  _, trace = _run(loss_fn, images, epsilon)
  found = np.asarray(trace['best_loss'][-1])
  assert np.all(found <= best + 1e-5)
  assert np.mean(found >= best - 1e-5) >= 0.9


def test_a_flat_loss_halves_the_step_at_every_checkpoint():
  # No step raises a constant loss: condition 1 holds at every checkpoint.
  images = jnp.full((3, 5), 0.5)
  loss_fn = lambda x: (jnp.zeros(x.shape[0]), jnp.ones(x.shape[0], bool))
  epsilon, steps = 0.1, 100
  _, trace = _run(loss_fn, images, epsilon, steps)
  expected, step = [], 2 * epsilon
  marks = set(apgd.checkpoints(steps))
  for iteration in range(1, steps + 1):
    if iteration in marks:
      step /= 2
    expected.append(step)
  np.testing.assert_allclose(trace['step_size'][:, 0], expected, rtol=1e-6)
  assert int(trace['halved'][:, 0].sum()) == 8


def _expected_halving(start, losses, steps):
  """The paper's two conditions, recomputed from a trace's losses in plain Python."""
  marks = apgd.checkpoints(steps)
  previous_mark, best, best_at_check, halved_at_check = 0, start, start, False
  current, increases, halvings = start, 0, []
  for iteration, loss in enumerate(losses, 1):
    increases += loss > current
    best = max(best, loss)
    halve = False
    if iteration in marks:
      window = iteration - previous_mark
      halve = increases < apgd.RHO * window or (not halved_at_check and best <= best_at_check)
      previous_mark, increases = iteration, 0
      best_at_check, halved_at_check = best, halve
    halvings.append(halve)
    current = best if halve else loss
  return halvings


def test_halving_and_restarts_follow_the_two_conditions_on_a_bumpy_loss():
  # A non-convex loss (a small tanh network): some checkpoints halve, others do not.
  rng = np.random.default_rng(2)
  hidden = jnp.asarray(rng.normal(size=(8, 32)) * 4, jnp.float32)
  readout = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
  images = _data(rng, 32, 8)
  labels = jnp.asarray(rng.integers(0, 4, 32))

  def loss_fn(x):
    logits = jnp.tanh(x @ hidden) @ readout
    return (optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            jnp.argmax(logits, -1) == labels)

  steps = 50
  _, trace = _run(loss_fn, images, 0.2, steps)
  losses, start = np.asarray(trace['loss']), np.asarray(trace['start_loss'])
  halved = np.asarray(trace['halved'])
  for example in range(images.shape[0]):
    expected = _expected_halving(float(start[example]), losses[:, example].tolist(), steps)
    assert halved[:, example].tolist() == expected, example
  marks = [m - 1 for m in apgd.checkpoints(steps)[1:]]
  assert 0 < halved[marks].mean() < 1  # both outcomes occur
  np.testing.assert_allclose(trace['best_loss'], np.maximum.accumulate(
      np.concatenate([start[None], losses]), axis=0)[1:])


@pytest.mark.parametrize('epsilon', [0.0, 0.03])
def test_returned_points_stay_in_the_ball_and_eps_zero_is_the_clean_image(epsilon):
  rng = np.random.default_rng(3)
  weights = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  images = _data(rng, 16, 6)
  loss_fn = _linear(weights, jnp.zeros(3), jnp.asarray(rng.integers(0, 3, 16)))
  adversarial, _ = _run(loss_fn, images, epsilon, steps=10)
  adversarial, images = np.asarray(adversarial), np.asarray(images)
  if epsilon == 0:
    np.testing.assert_array_equal(adversarial, images)
  assert np.abs(adversarial - images).max() <= epsilon + 1e-6
  assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_misclassified_points_are_kept_and_the_loss_never_falls_below_the_start():
  rng = np.random.default_rng(4)
  weights = jnp.asarray(rng.normal(size=(6, 3)) * 2, jnp.float32)
  images = _data(rng, 64, 6)
  labels = jnp.asarray(rng.integers(0, 3, 64))
  loss_fn = _linear(weights, jnp.zeros(3), labels)
  adversarial, trace = _run(loss_fn, images, 0.08, steps=30)
  loss, correct = (np.asarray(v) for v in loss_fn(adversarial))
  _, clean_correct = loss_fn(images)
  # Misclassified clean images stay misclassified; robust ones end at their best loss.
  assert not np.any(correct & ~np.asarray(clean_correct))
  np.testing.assert_allclose(loss[correct], np.asarray(trace['best_loss'][-1])[correct],
                             rtol=1e-6)
  assert np.all(np.asarray(trace['best_loss'][-1]) >= np.asarray(trace['start_loss']))


@pytest.mark.parametrize('is_check,increases,halved_before,best,best_before,expected', [
    (True, 16, False, 2.0, 1.0, True),  # condition 1: 16 < 0.75 · 22 = 16.5 loss-raising steps
    (True, 17, False, 2.0, 1.0, False),  # 17 ≥ 16.5 and the best loss rose: keep the step
    (True, 17, False, 1.0, 1.0, True),  # condition 2: the best loss has not risen since
    (True, 17, True, 1.0, 1.0, False),  # ... but the step was halved at the last checkpoint
    (True, 0, True, 1.0, 1.0, True),  # condition 1 alone
    (False, 0, False, 1.0, 1.0, False),  # only at checkpoints
])
def test_the_two_halving_conditions(is_check, increases, halved_before, best, best_before,
                                    expected):
  assert bool(apgd.halves(jnp.bool_(is_check), jnp.int32(increases), jnp.int32(22),
                          jnp.bool_(halved_before), jnp.float32(best),
                          jnp.float32(best_before))) is expected


def test_a_halving_restarts_from_the_best_point():
  # A linear loss whose reported gradient is reversed: every step descends, so the start x⁽⁰⁾
  # stays the best point. The first step (no momentum, 2ε) lands on the worst corner and stays;
  # at w_1 = 22 nothing rose, so the step halves and x⁽²²⁾ becomes x⁽⁰⁾ again: the next iterate
  # has left the corner.
  rng = np.random.default_rng(5)
  slope = jnp.asarray(rng.normal(size=6), jnp.float32)
  images, epsilon = _data(rng, 8, 6), 0.05

  def loss_fn(x):
    value = x @ slope
    return value - 2 * (value - jax.lax.stop_gradient(value)), jnp.ones(x.shape[0], bool)

  _, trace = _run(loss_fn, images, epsilon)
  corner = np.clip(np.asarray(images) - epsilon * np.sign(np.asarray(slope)), 0, 1)
  corner_loss = corner @ np.asarray(slope)
  losses = np.asarray(trace['loss'])
  np.testing.assert_allclose(losses[:22], np.broadcast_to(corner_loss, (22, 8)), rtol=1e-5)
  assert np.all(trace['halved'][21]) and not np.any(trace['halved'][:21])
  assert np.all(losses[22] > corner_loss + 1e-4)  # restarted from x⁽⁰⁾, off the corner
  # By hand: η = ε now, z = P(x⁽⁰⁾ − ε·sign c), and the momentum term is x⁽⁰⁾ − x⁽²¹⁾.
  start, lower, upper = (np.asarray(trace['start']), np.clip(np.asarray(images) - epsilon, 0, 1),
                         np.clip(np.asarray(images) + epsilon, 0, 1))
  step = np.clip(start - epsilon * np.sign(np.asarray(slope)), lower, upper)
  restarted = np.clip(start + 0.75 * (step - start) + 0.25 * (start - corner), lower, upper)
  np.testing.assert_allclose(losses[22], restarted @ np.asarray(slope), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(trace['best_loss'][21], trace['start_loss'])  # x⁽⁰⁾ was best


_SHARDED = textwrap.dedent('''
    import functools, jax, jax.numpy as jnp, numpy as np, optax
    from spatialmix_jax.infra import sharding
    from spatialmix_jax.objectives import apgd
    assert jax.device_count() == 4
    rng = np.random.default_rng(6)
    weights = jnp.asarray(rng.normal(size=(6, 3)) * 2, jnp.float32)
    images = jnp.asarray(rng.uniform(size=(16, 6)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, 16))
    def attack(images, labels, epsilon):
      def loss_fn(x):
        logits = x @ weights
        return (optax.softmax_cross_entropy_with_integer_labels(logits, labels),
                jnp.argmax(logits, -1) == labels)
      return apgd.apgd(loss_fn, images, epsilon, steps=30, key=jax.random.PRNGKey(0))
    mesh = sharding.create_mesh()
    split, whole = sharding.batch_sharded(mesh), sharding.replicated(mesh)
    sharded = jax.jit(attack, in_shardings=(split, split, whole), out_shardings=split)
    a = sharded(jax.device_put(images, split), jax.device_put(labels, split), jnp.float32(0.1))
    b = jax.jit(attack)(jax.device_put(images, jax.devices()[0]),
                        jax.device_put(labels, jax.devices()[0]), jnp.float32(0.1))
    print('MAXDIFF', float(jnp.max(jnp.abs(np.asarray(a) - np.asarray(b)))))
''')


def test_apgd_under_a_batch_split_over_devices_matches_one_device():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run([sys.executable, '-c', _SHARDED], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'MAXDIFF 0.0' in out.stdout, out.stdout
