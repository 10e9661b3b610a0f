"""create_runtime(--distribution): picks the back-end class and lets it set itself up."""
import tensorflow as tf

from tf_gp2bm.errors import InputError
from tf_gp2bm.runtime import DISTRIBUTIONS, launcher_rank
from tf_gp2bm.runtime.horovod_runtime import HorovodRuntime
from tf_gp2bm.runtime.mirrored import MirroredRuntime
from tf_gp2bm.runtime.multiworker import MultiWorkerRuntime
from tf_gp2bm.runtime.single_device import SingleDevice

BACKENDS = {"horovod": HorovodRuntime, "mirrored": MirroredRuntime, "multiworker": MultiWorkerRuntime,
            "none": SingleDevice}


def auto_distribution():
  """horovod under horovodrun, mirrored with several local GPUs, else none."""
  if launcher_rank() is not None:
    return "horovod"
  return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "none"


def create_runtime(distribution="auto"):
  """Builds the Runtime for --distribution (one of DISTRIBUTIONS)."""
  if distribution not in DISTRIBUTIONS:
    raise InputError(f"--distribution={distribution!r}: expected one of {', '.join(DISTRIBUTIONS)}")
  if distribution == "auto":
    distribution = auto_distribution()
  return BACKENDS[distribution].create()
