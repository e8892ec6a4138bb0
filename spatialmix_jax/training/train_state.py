"""The train state, its optimizer, and how both are built from an experiment."""

import functools

import flax
import jax
import jax.numpy as jnp
import optax

from spatialmix_jax.modeling import freezing
from spatialmix_jax.training import optimizers
from spatialmix_jax.infra import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  weights: dict  # {collection: tree}, frozen collections included
  batch_stats: dict
  opt_state: optax.OptState

  def as_dict(self):
    return {'step': self.step, 'weights': self.weights, 'batch_stats': self.batch_stats,
            'opt_state': self.opt_state}


def total_train_steps(config, steps_per_epoch):
  if config.num_train_steps > 0:
    return config.num_train_steps
  return config.num_epochs * steps_per_epoch


def create_optimizer(experiment, total_steps, steps_per_epoch):
  config = experiment.config
  schedule = optimizers.create_schedule(config.optimizer, total_steps, steps_per_epoch)
  tx = optimizers.create_optimizer(config.optimizer, schedule)
  weight_shapes, _ = freezing.split_variables(jax.eval_shape(experiment.init_variables))
  return freezing.freeze(tx, weight_shapes, experiment.frozen), schedule


def init_state(experiment, tx):
  weights, batch_stats = freezing.split_variables(experiment.init_variables())
  return TrainState(step=jnp.zeros((), jnp.int32), weights=weights, batch_stats=batch_stats,
                    opt_state=tx.init(weights))


def initial_state(experiment, tx):
  """The step-0 state a run starts from, computed the one way every caller shares (jitted,
  replicated over the mesh), so that recomputing it reproduces the run's bits."""
  repl = sharding.replicated(experiment.mesh)
  return jax.jit(functools.partial(init_state, experiment, tx), out_shardings=repl)()


def abstract_state(experiment, tx):
  repl = sharding.replicated(experiment.mesh)
  shapes = jax.eval_shape(functools.partial(init_state, experiment, tx))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)
