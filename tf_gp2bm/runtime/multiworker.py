"""tf.distribute across processes and nodes: MultiWorkerMirroredStrategy, for clusters without Horovod.

The cluster comes from TF_CONFIG (one per process: `{"cluster": {"worker": ["h1:port", ...]}, "task": {"type":
"worker", "index": i}}`) or, inside a Slurm step (srun, one task per node or per GPU), from Slurm's environment
through SlurmClusterResolver. Worker 0 (or the chief) is rank 0 and writes the MLPerf log.
Host-side collectives (eval counts, batch-norm statistics, the start-up broadcast) go through the strategy's own
all-reduce so every worker computes the same thing in the same order, as under Horovod.
"""
import json
import os
import re
import shutil

import tensorflow as tf

from tf_gp2bm.errors import InputError
from tf_gp2bm.runtime.base import configure_gpus
from tf_gp2bm.runtime.mirrored import StrategyRuntime

# Workers on one node listen on PORT_BASE + their index on the node; the step id keeps consecutive runs of a job
# off each other's ports while the previous step's sockets close.
PORT_BASE = 20000
PORTS_PER_STEP = 32


def cluster_resolver(env=None):
  """TF_CONFIG first (the portable form), else the Slurm step; InputError when there is neither."""
  env = os.environ if env is None else env
  if env.get("TF_CONFIG"):
    try:
      config = json.loads(env["TF_CONFIG"])
      workers = config["cluster"].get("worker", []) + config["cluster"].get("chief", [])
      task = config["task"]
      task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise InputError(f"TF_CONFIG is not a cluster description ({type(e).__name__}: {e}); expected "
                       '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}') from None
    if not workers:
      raise InputError("TF_CONFIG names no worker: expected cluster.worker as a list of host:port")
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()
  if "SLURM_PROCID" in env and "SLURM_STEP_NODELIST" in env:
    port = int(env.get("GP2BM_MULTIWORKER_PORT",
                       PORT_BASE + (int(env.get("SLURM_STEP_ID", "0")) % 1000) * PORTS_PER_STEP))
    if shutil.which("nvidia-smi"):
      return tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=port)
    # A CPU node: the resolver hands out one "GPU" per task and would count GPUs with nvidia-smi; give it one
    # per task and keep it off CUDA_VISIBLE_DEVICES.
    per_node = max(int(m.group(1)) for m in re.finditer(r"(\d+)(?:\(x\d+\))?",
                                                         env.get("SLURM_STEP_TASKS_PER_NODE", "1")))
    return tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=port, gpus_per_node=per_node,
                                                               gpus_per_task=1, auto_set_gpu=False)
  raise InputError("--distribution=multiworker needs TF_CONFIG (the cluster and this process's task) or a Slurm "
                   "step (srun); neither is set")


def worker_rank(resolver):
  """(rank, size): the chief first, then the workers in their TF_CONFIG order."""
  spec = resolver.cluster_spec().as_dict()
  chiefs, workers = spec.get("chief", []), spec.get("worker", [])
  index = int(resolver.task_id)
  rank = index if resolver.task_type == "chief" else len(chiefs) + index
  return rank, len(chiefs) + len(workers)


class MultiWorkerRuntime(StrategyRuntime):

  name = "multiworker"

  def __init__(self, strategy, rank, size):
    super().__init__(strategy, rank=rank, size=size)
    self._local = strategy.num_replicas_in_sync // size
    self._sum = tf.function(self._replica_sum)

  @classmethod
  def create(cls):
    # The resolver may set CUDA_VISIBLE_DEVICES, so it comes before anything looks at the GPUs.
    resolver = cluster_resolver()
    rank, size = worker_rank(resolver)
    gpus = configure_gpus()
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver,
        communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation))
    return cls(strategy, rank, size)

  def reduce_sum(self, value):
    # Only this process's replicas: all_sum_host adds the workers, as with Horovod (the strategy's own reduce
    # would already cross workers and be counted twice).
    return tf.add_n([tf.convert_to_tensor(v) for v in self.strategy.experimental_local_results(value)])

  def _replica_sum(self, tensors, weights):
    """Inside every replica: sum over all replicas of tensors * this worker's weight / local replicas."""
    ctx = tf.distribute.get_replica_context()
    scale = tf.gather(weights, ctx.replica_id_in_sync_group) / self._local
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.cast(t, tf.float64) * scale for t in tensors])

  def _across_workers(self, tensors, weights):
    """sum over workers of weight(worker) * tensor, computed by every worker (tensors: this worker's values)."""
    weights = tf.constant(weights, tf.float64)
    per_replica = self.strategy.run(self._sum, args=([tf.cast(t, tf.float64) for t in tensors], weights))
    return [self.strategy.experimental_local_results(t)[0] for t in per_replica]

  def _weights(self, only_rank=None):
    """One weight per replica in the group: 1 for every worker, or 1 for `only_rank`'s replicas and 0 else."""
    replicas = self.strategy.num_replicas_in_sync
    if only_rank is None:
      return [1.0] * replicas
    return [1.0 if r // self._local == only_rank else 0.0 for r in range(replicas)]

  def all_sum_host(self, values):
    if self.size == 1:
      return [float(tf.convert_to_tensor(v, tf.float64).numpy()) for v in values]
    return [float(t.numpy()) for t in self._across_workers([tf.convert_to_tensor(v) for v in values],
                                                           self._weights())]

  def average_variables(self, variables):
    if self.size == 1:
      return
    sums = self._across_workers([v.read_value() for v in variables], self._weights())
    for v, total in zip(variables, sums):
      v.assign(tf.cast(total / self.size, v.dtype))

  def broadcast_variables(self, variables):
    # Rank 0's values, everywhere: a sum in which only rank 0's replicas contribute.
    if self.size == 1:
      return
    values = self._across_workers([v.read_value() for v in variables], self._weights(only_rank=0))
    for v, value in zip(variables, values):
      v.assign(tf.cast(value, v.dtype))
