"""The sharded train step: one optimizer update on a global batch, gradients only for the
trainable collections, optionally on FGSM images and over micro-batches.

No TensorFlow or CLU here: the accelerator benchmark times exactly this step on machines that
have neither.
"""

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from spatialmix_jax.objectives import attacks
from spatialmix_jax.modeling import freezing
from spatialmix_jax.infra import sharding
from spatialmix_jax.objectives import tasks


def train_step(state, batch, *, experiment, tx):
  """One optimizer step on a global batch; gradients only for trainable collections."""
  inputs, targets = experiment.task.inputs_and_targets(batch)
  trainable, frozen = freezing.split(state.weights, experiment.frozen)
  adversarial = experiment.config.adversarial_training
  if adversarial.enabled:
    # FGSM against the network exactly as this step evaluates it (train-mode BatchNorm on
    # this batch, current weights), so the update minimises the loss the attack maximised.
    variables = {**state.weights, 'batch_stats': state.batch_stats}
    loss_at = attacks.classification_loss(experiment, variables, targets, train=True)
    inputs = jax.lax.stop_gradient(attacks.fgsm(loss_at, inputs, adversarial.epsilon / 255.0))

  def micro_step(batch_stats, micro_batch):
    micro_inputs, micro_targets = micro_batch

    def loss_fn(trainable_weights):
      variables = {**freezing.merge(trainable_weights, frozen), 'batch_stats': batch_stats}
      outputs, model_state = experiment.model.apply(
          variables, micro_inputs, train=True, mutable=['batch_stats'])
      loss, metrics = experiment.task.per_example(outputs, micro_targets)
      return jnp.mean(loss), (model_state.get('batch_stats', batch_stats),
                              tasks.summed(loss, metrics))

    grads, (new_stats, metrics) = jax.grad(loss_fn, has_aux=True)(trainable)
    return grads, new_stats, metrics

  grads, batch_stats, metrics = accumulate_gradients(
      micro_step, state.batch_stats, (inputs, targets), experiment.config.grad_accum_steps,
      experiment.mesh)
  updates, opt_state = tx.update(freezing.full_gradients(grads, frozen), state.opt_state,
                                 state.weights)
  state = state.replace(step=state.step + 1, weights=optax.apply_updates(state.weights, updates),
                        batch_stats=batch_stats, opt_state=opt_state)
  return state, metrics


def accumulate_gradients(micro_step, batch_stats, batch, num_micro, mesh):
  """Mean gradient of `batch` taken as `num_micro` equal micro-batches, one after another.

  `micro_step(batch_stats, micro_batch) -> (grads, batch_stats, metric sums)`. The micro-batches
  run in a `lax.scan`, so only one micro-batch's activations are alive at a time; the mean of
  their mean-loss gradients is the full batch's gradient, and one optimizer update follows,
  so the step count, LR schedule and freezing are those of an unsplit step. BatchNorm is the
  exception: each micro-batch is normalised by its own statistics (as per-GPU BatchNorm in
  PyTorch DDP is), and the running averages are updated once per micro-batch.
  """
  if num_micro == 1:
    return micro_step(batch_stats, batch)
  num_devices = mesh.devices.size

  def split(x):
    # Micro-batch j takes the j-th slice of every device's shard, so splitting moves no data
    # between devices and each micro-batch stays spread over the whole mesh.
    per_device = x.shape[0] // num_devices
    x = x.reshape((num_devices, num_micro, per_device // num_micro) + x.shape[1:])
    x = jnp.swapaxes(x, 0, 1).reshape((num_micro, x.shape[0] * x.shape[2]) + x.shape[3:])
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS)))

  def body(carry, micro_batch):
    grad_sum, stats = carry
    grads, stats, metrics = micro_step(stats, micro_batch)
    return (jax.tree.map(jnp.add, grad_sum, grads), stats), metrics

  micro_batches = jax.tree.map(split, batch)
  first = jax.tree.map(lambda x: x[0], micro_batches)
  grad_shapes = jax.eval_shape(lambda: micro_step(batch_stats, first)[0])
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), grad_shapes)
  (grad_sum, batch_stats), metrics = jax.lax.scan(body, (zeros, batch_stats), micro_batches)
  grads = jax.tree.map(lambda g: g / num_micro, grad_sum)
  return grads, batch_stats, jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)


def compile_train_step(experiment, tx):
  repl = sharding.replicated(experiment.mesh)
  return jax.jit(functools.partial(train_step, experiment=experiment, tx=tx),
                 in_shardings=(repl, sharding.batch_sharded(experiment.mesh)),
                 out_shardings=(repl, repl), donate_argnums=0)
