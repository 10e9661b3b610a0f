"""A worked compiled custom op as a vendor kernel module: `--kernels=examples.custom_op`.

Replaces the `gelu` hot spot (and through bias_gelu's default, BERT's feed-forward activation) with the C++ op
Gp2bmGelu from gelu_op.cc, whose gradient is the C++ op Gp2bmGeluGrad. The library is the file named by
$GP2BM_GELU_OP_LIBRARY, or built on first import into the user's cache ($XDG_CACHE_HOME or ~/.cache, under
tf_gp2bm/custom_op/<TensorFlow version>), never into the source tree (examples/custom_op/build.py; README.md).
The op has only a CPU kernel and no XLA kernel: run with --xla=false (docs/vendor_kernels.md).
"""
import os

import tensorflow as tf

from examples.custom_op import build
from tf_gp2bm import kernels

LIBRARY_ENV = "GP2BM_GELU_OP_LIBRARY"



def _cache_dir():
  """Per TensorFlow version: a library built against other headers must not be loaded."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "tf_gp2bm", "custom_op", tf.__version__)


_ops = tf.load_op_library(os.environ.get(LIBRARY_ENV) or build.build(_cache_dir()))


@tf.RegisterGradient("Gp2bmGelu")
def _gelu_gradient(op, dy):
  return _ops.gp2bm_gelu_grad(dy, op.inputs[0])


def gelu(x):
  return _ops.gp2bm_gelu(x)


kernels.register("gelu", gelu)
