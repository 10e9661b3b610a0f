"""--deterministic: the same seed gives the same trajectory, so a run with vendor kernels can be compared step by
step with a run on the defaults (docs/vendor_kernels.md).

Three sources of run-to-run differences are closed: op kernels and reductions that use atomics or thread-order
dependent sums (TensorFlow's op determinism, XLA's GPU backend included), tf.data stages that hand out elements
in completion order (op determinism makes every `deterministic=False` in the input code ordered), and random ops
(the model's dropout is seeded stateless dropout, tf_gp2bm.kernels.model_garden; shuffles use the run seed).
Slower: the input pipeline loses its out-of-order parallelism and some GPU kernels their fastest algorithm.
"""
import os

import tensorflow as tf

XLA_DETERMINISM = "--xla_gpu_deterministic_ops=true"
_state = {"enabled": False}  # TensorFlow has no public query for op determinism


def enable():
  """Turns deterministic execution on for this process; call after seeding and before the model is built (its
  max pooling is built for it, tf_gp2bm.kernels.model_garden) and the first step compiles."""
  _state["enabled"] = True
  tf.config.experimental.enable_op_determinism()
  flags = os.environ.get("XLA_FLAGS", "")
  if XLA_DETERMINISM not in flags.split():  # read by XLA when it first compiles
    os.environ["XLA_FLAGS"] = f"{flags} {XLA_DETERMINISM}".strip()


def enabled():
  return _state["enabled"]
