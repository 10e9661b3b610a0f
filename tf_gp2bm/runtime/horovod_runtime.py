"""Horovod: one process per GPU, launched by horovodrun; gradients are all-reduced by horovod.tensorflow."""
import tensorflow as tf

from tf_gp2bm.errors import InputError
from tf_gp2bm.runtime.base import Runtime, configure_gpus


class HorovodRuntime(Runtime):

  name = "horovod"

  def __init__(self, hvd):
    super().__init__(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank())
    self._hvd = hvd

  @classmethod
  def create(cls):
    try:
      import horovod.tensorflow as hvd  # optional dependency: built by scripts/setup.sh, absent elsewhere
    except ImportError as e:
      raise InputError(f"--distribution=horovod but horovod.tensorflow cannot be imported ({e}); run "
                       "scripts/setup.sh or use --distribution=mirrored") from None
    hvd.init()
    configure_gpus(local_rank=hvd.local_rank())
    return cls(hvd)

  def all_mean(self, tensors):
    if self.size == 1:
      return tensors
    return [None if t is None else self._hvd.allreduce(t, op=self._hvd.Average) for t in tensors]

  def all_sum_host(self, values):
    values = [tf.convert_to_tensor(v, tf.float64) for v in values]
    if self.size > 1:
      values = [self._hvd.allreduce(v, op=self._hvd.Sum) for v in values]
    return [float(v.numpy()) for v in values]

  def average_variables(self, variables):
    if self.size > 1:
      for v in variables:
        v.assign(self._hvd.allreduce(v.read_value(), op=self._hvd.Average, name=v.name.replace(":", "_")))

  def broadcast_variables(self, variables):
    if self.size > 1:
      self._hvd.broadcast_variables(variables, root_rank=0)
