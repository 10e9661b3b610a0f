"""The one layer that owns distribution (Horovod / tf.distribute / single device), XLA and precision.

Task and model code never check ranks: they receive a Runtime and call its collective helpers.
"""
from tf_gp2bm.runtime.distribution import Runtime, create_runtime  # noqa: F401
from tf_gp2bm.runtime.precision import Precision  # noqa: F401
