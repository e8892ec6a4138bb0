"""The one evaluation loop, shared by clean and attacked evaluation: a jitted step over every
test batch (the last one padded, with a `mask`), its masked metric sums added up over batches,
devices and processes, and divided once (`tasks.averaged`), so every example counts once."""

import functools

import jax
import numpy as np

from spatialmix_jax.infra import sharding
from spatialmix_jax.objectives import tasks


def eval_step(variables, batch, index, *, experiment):
  """Masked metric sums of one batch (`index` is unused: attacked steps seed with it)."""
  del index
  inputs, targets = experiment.task.inputs_and_targets(batch)
  outputs = experiment.model.apply(variables, inputs, train=False)
  loss, metrics = experiment.task.per_example(outputs, targets, training=False)
  return tasks.summed(loss, metrics, batch['mask'])


def compile_step(step, mesh, num_replicated_extra_args=0):
  """jit of `step(variables, batch, index, *extra)`: variables, the batch index and the extra
  arguments replicated, the batch split over the mesh."""
  repl = sharding.replicated(mesh)
  return jax.jit(step, in_shardings=(repl, sharding.batch_sharded(mesh), repl)
                 + (repl,) * num_replicated_extra_args, out_shardings=repl)


def compile_eval_step(experiment):
  return compile_step(functools.partial(eval_step, experiment=experiment), experiment.mesh)


def totals(step, variables, eval_data, mesh, *extra):
  """The step's metric sums (any pytree of them) added up over every batch of the split."""
  summed = None
  for index, local_batch in enumerate(eval_data.iterate()):
    sums = step(variables, sharding.global_batch(local_batch, mesh), np.int32(index), *extra)
    summed = sums if summed is None else jax.tree.map(np.add, summed, sums)
  return jax.device_get(summed)


def run(step, variables, eval_data, mesh, *extra):
  """Means of the step's metrics over every example of the split (`count` of them)."""
  return tasks.averaged(totals(step, variables, eval_data, mesh, *extra))
