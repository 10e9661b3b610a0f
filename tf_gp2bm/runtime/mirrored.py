"""tf.distribute: one process driving several replicas through a strategy (MirroredStrategy over local GPUs)."""
import os

import tensorflow as tf

from tf_gp2bm.runtime.base import Runtime, configure_gpus


class StrategyRuntime(Runtime):
  """What every tf.distribute strategy shares: the strategy places variables, runs replicas and reduces."""

  jit_eval = False  # an XLA eval step inside the dataset loop lands on the first device only

  def __init__(self, strategy, rank=0, size=1):
    super().__init__(rank=rank, size=size, replicas_per_process=strategy.num_replicas_in_sync // size)
    self.strategy = strategy

  def scope(self):
    return self.strategy.scope()

  def run(self, fn, args=()):
    return self.strategy.run(fn, args=args)

  def reduce_sum(self, value):
    # The strategy's reduce already covers every replica, in this process and any other.
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

  def distribute_dataset(self, dataset_fn):
    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def all_mean(self, tensors):
    if self.num_replicas == 1:
      return tensors
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, tensors)


class MirroredRuntime(StrategyRuntime):

  name = "mirrored"

  @classmethod
  def create(cls):
    gpus = configure_gpus()
    devices = None
    cpu_replicas = int(os.environ.get("GP2BM_CPU_REPLICAS", "0"))
    if not gpus and cpu_replicas > 1:
      # Without GPUs, split the CPU into logical devices so the mirrored path runs (and is tested) for real.
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
      devices = [f"/cpu:{i}" for i in range(cpu_replicas)]
    return cls(tf.distribute.MirroredStrategy(devices))

  def distribute_dataset(self, dataset_fn):
    # One input pipeline per replica, as under Horovod: each replica reads its own shard with the same batch count.
    # (With one pipeline per process, batches go round-robin to the replicas, and an eval whose batch count is not a
    # multiple of them leaves a replica without a batch on the last step.)
    options = tf.distribute.InputOptions(experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA)
    return self.strategy.distribute_datasets_from_function(dataset_fn, options=options)
