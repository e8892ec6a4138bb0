"""Data parallelism over every device of every process: a 1-D mesh with axis `data`.

The train state is replicated and each batch is split along its leading axis, so BatchNorm
statistics and the loss are computed over the global batch by XLA's collectives.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def create_mesh():
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh):
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(local_batch, mesh):
  """Turns this process's numpy batch into global arrays split over the mesh."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
