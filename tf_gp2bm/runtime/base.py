"""The interface every distribution back-end implements, with the single-process defaults.

A back-end answers four questions: who am I (rank, size, replicas), how does a replica step run (scope, run,
reduce_sum), how are values combined across replicas and processes (all_mean inside the step; all_sum_host,
average_variables, broadcast_variables outside it), and which shard of the data does each replica read.
"""
import contextlib

import tensorflow as tf


class Runtime:
  """One process on one device. Subclasses override what their back-end does differently."""

  name = "none"
  # Whether the eval step may be an XLA region (MirroredStrategy places such a step on its first device only).
  jit_eval = True

  def __init__(self, rank=0, size=1, local_rank=0, replicas_per_process=1):
    self.rank, self.size, self.local_rank = rank, size, local_rank
    # Replicas that take part in gradient averaging (processes x replicas per process).
    self.num_replicas = size * replicas_per_process

  @property
  def is_chief(self):
    return self.rank == 0

  def scope(self):
    """Context in which variables are created (a strategy's scope places them on its replicas)."""
    return contextlib.nullcontext()

  # --- running a step --------------------------------------------------------------------------------------
  def run(self, fn, args=()):
    """Runs a per-replica function (a strategy returns PerReplica values)."""
    return fn(*args)

  def reduce_sum(self, value):
    """Sums a per-replica result over the replicas this process drives."""
    return value

  def distribute_dataset(self, dataset_fn):
    """dataset_fn(input_context) -> per-replica dataset; each rank/replica reads a disjoint shard."""
    ctx = tf.distribute.InputContext(num_input_pipelines=self.size, input_pipeline_id=self.rank,
                                     num_replicas_in_sync=self.num_replicas)
    return dataset_fn(ctx)

  # --- combining values ------------------------------------------------------------------------------------
  def all_mean(self, tensors):
    """Inside the replica step: the mean of a list of tensors over all replicas (None entries pass through)."""
    return tensors

  def all_sum_host(self, values):
    """Outside any step: sums numbers over processes (eval counts). Returns floats."""
    return [float(tf.convert_to_tensor(v, tf.float64).numpy()) for v in values]

  def average_variables(self, variables):
    """Outside any step: sets variables to their mean over processes (batch-norm statistics before an eval)."""

  def broadcast_variables(self, variables):
    """Makes every process start from rank 0's values (model, optimizer slots, loss scale)."""

  def describe(self):
    return (f"{self.name}: rank {self.rank}/{self.size}, local rank {self.local_rank}, "
            f"{self.num_replicas} replica(s), devices {[d.name for d in tf.config.list_logical_devices()]}")


def configure_gpus(local_rank=None):
  """Memory growth on every GPU; with `local_rank`, this process sees only its own GPU. Returns the GPUs."""
  gpus = tf.config.list_physical_devices("GPU")
  for gpu in gpus:
    tf.config.experimental.set_memory_growth(gpu, True)
  if local_rank is not None and gpus:
    tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
  return gpus
