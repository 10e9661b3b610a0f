"""Distribution back-ends behind one small interface.

`horovod`: one process per GPU launched by horovodrun; gradients are all-reduced with horovod.tensorflow.
`mirrored`: one process, tf.distribute.MirroredStrategy over the local GPUs (for when Horovod is absent).
`none`: one process, one device.
`auto` picks horovod when launched by horovodrun (its env vars are set), else mirrored with >1 GPU, else none.
"""
import contextlib
import os

import tensorflow as tf

from tf_gp2bm.errors import InputError

_HOROVOD_ENV = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def launched_by_horovodrun():
  return any(k in os.environ for k in _HOROVOD_ENV)


class Runtime:
  """Rank/size, collectives and per-rank sharding for one training process."""

  def __init__(self, kind, hvd=None, strategy=None):
    self.kind = kind
    self._hvd = hvd
    self.strategy = strategy
    if kind == "horovod":
      self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
    else:
      self.rank, self.size, self.local_rank = 0, 1, 0
    # Replicas that take part in gradient averaging (processes x replicas per process).
    self.num_replicas = self.size * (strategy.num_replicas_in_sync if strategy else 1)

  @property
  def is_chief(self):
    return self.rank == 0

  def scope(self):
    return self.strategy.scope() if self.strategy else contextlib.nullcontext()

  # --- collectives (called inside the replica step) -------------------------------------------------------
  def all_mean(self, tensors):
    """Averages a list of tensors over all replicas (None entries pass through)."""
    if self.num_replicas == 1:
      return tensors
    if self.kind == "horovod":
      return [None if t is None else self._hvd.allreduce(t, op=self._hvd.Average) for t in tensors]
    ctx = tf.distribute.get_replica_context()
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tensors)

  def all_sum(self, tensors):
    if self.num_replicas == 1:
      return tensors
    if self.kind == "horovod":
      return [self._hvd.allreduce(t, op=self._hvd.Sum) for t in tensors]
    ctx = tf.distribute.get_replica_context()
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tensors)

  def all_sum_host(self, values):
    """Sums python/numpy values across processes (outside any step); used for eval counts."""
    values = [tf.convert_to_tensor(v, tf.float64) for v in values]
    if self.kind == "horovod" and self.size > 1:
      values = [self._hvd.allreduce(v, op=self._hvd.Sum) for v in values]
    return [float(v.numpy()) for v in values]

  def all_max_host(self, value):
    if self.kind == "horovod" and self.size > 1:
      gathered = self._hvd.allgather(tf.constant([value], tf.float64))
      return float(tf.reduce_max(gathered).numpy())
    return float(value)

  def average_variables(self, variables):
    """Host-side mean of variables over ranks (batch-norm moving statistics before each eval)."""
    if self.kind == "horovod" and self.size > 1:
      for v in variables:
        v.assign(self._hvd.allreduce(v.read_value(), op=self._hvd.Average, name=v.name.replace(":", "_")))

  def broadcast_variables(self, variables):
    """Makes every rank start from rank 0's values (model, optimizer slots, loss scale)."""
    if self.kind == "horovod" and self.size > 1:
      self._hvd.broadcast_variables(variables, root_rank=0)

  # --- running a step --------------------------------------------------------------------------------------
  def run(self, fn, args=()):
    """Runs a per-replica function; with MirroredStrategy returns PerReplica values."""
    if self.strategy:
      return self.strategy.run(fn, args=args)
    return fn(*args)

  def reduce_sum(self, value):
    """Sums a per-replica result over the replicas of this process."""
    if self.strategy:
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
    return value

  def distribute_dataset(self, dataset_fn):
    """dataset_fn(input_context) -> per-replica dataset; each rank/replica reads a disjoint shard."""
    if self.strategy:
      return self.strategy.distribute_datasets_from_function(dataset_fn)
    ctx = tf.distribute.InputContext(num_input_pipelines=self.size, input_pipeline_id=self.rank,
                                     num_replicas_in_sync=self.num_replicas)
    return dataset_fn(ctx)

  def barrier(self):
    if self.kind == "horovod" and self.size > 1:
      self._hvd.join()

  def describe(self):
    return (f"{self.kind}: rank {self.rank}/{self.size}, local rank {self.local_rank}, "
            f"{self.num_replicas} replica(s), devices {[d.name for d in tf.config.list_logical_devices()]}")


def _configure_gpus(local_rank, pin_one):
  gpus = tf.config.list_physical_devices("GPU")
  for gpu in gpus:
    tf.config.experimental.set_memory_growth(gpu, True)
  if pin_one and gpus:
    tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
  return gpus


def create_runtime(distribution="auto"):
  """Builds the Runtime for --distribution (auto|horovod|mirrored|none)."""
  if distribution not in ("auto", "horovod", "mirrored", "none"):
    raise InputError(f"--distribution={distribution!r}: expected one of auto, horovod, mirrored, none")
  if distribution == "auto":
    if launched_by_horovodrun():
      distribution = "horovod"
    else:
      distribution = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "none"
  if distribution == "horovod":
    try:
      import horovod.tensorflow as hvd
    except ImportError as e:
      raise InputError(
          f"--distribution=horovod but horovod.tensorflow cannot be imported ({e}); run scripts/setup.sh "
          "or use --distribution=mirrored") from None
    hvd.init()
    _configure_gpus(hvd.local_rank(), pin_one=True)
    return Runtime("horovod", hvd=hvd)
  gpus = _configure_gpus(0, pin_one=False)
  if distribution == "mirrored":
    devices = None
    cpu_replicas = int(os.environ.get("GP2BM_CPU_REPLICAS", "0"))
    if not gpus and cpu_replicas > 1:
      # Without GPUs, split the CPU into logical devices so the mirrored path runs (and is tested) for real.
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
      devices = [f"/cpu:{i}" for i in range(cpu_replicas)]
    return Runtime("mirrored", strategy=tf.distribute.MirroredStrategy(devices))
  return Runtime("none")
