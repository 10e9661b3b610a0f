"""The one layer that owns distribution (Horovod / tf.distribute / single device), XLA and precision.

Task and model code never check ranks: they receive a Runtime (runtime/base.py) and call its collective helpers.
This package module stays free of TensorFlow so the CLI can list the choices in --help and name its rank before
TensorFlow loads; `runtime.factory` builds the Runtime and `runtime.precision` the mixed-precision policy.
"""
import os

# --distribution choices; factory.BACKENDS maps each one except "auto" to its Runtime class.
DISTRIBUTIONS = ("auto", "horovod", "mirrored", "multiworker", "none")

# One of these holds the process's rank in a process that horovodrun (gloo or MPI) started.
LAUNCHER_RANK_ENV = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def launcher_rank():
  """The rank a launcher gave this process, or None when no launcher started it."""
  for key in LAUNCHER_RANK_ENV:
    if key in os.environ:
      return int(os.environ[key])
  return None
