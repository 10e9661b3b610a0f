"""A worked compiled custom op as a vendor kernel module: `--kernels=examples.custom_op`.

Replaces the `gelu` hot spot (and through bias_gelu's default, BERT's feed-forward activation) with the C++ op
Gp2bmGelu from gelu_op.cc, whose gradient is the C++ op Gp2bmGeluGrad. The library is the file named by
$GP2BM_GELU_OP_LIBRARY, or built on first import into build/ next to this file (examples/custom_op/build.py).
The op has only a CPU kernel and no XLA kernel: run with --xla=false (docs/vendor_kernels.md).
"""
import os

import tensorflow as tf

from examples.custom_op import build
from tf_gp2bm import kernels

LIBRARY_ENV = "GP2BM_GELU_OP_LIBRARY"

_ops = tf.load_op_library(os.environ.get(LIBRARY_ENV) or build.build(os.path.join(os.path.dirname(__file__),
                                                                                   "build")))


@tf.RegisterGradient("Gp2bmGelu")
def _gelu_gradient(op, dy):
  return _ops.gp2bm_gelu_grad(dy, op.inputs[0])


def gelu(x):
  return _ops.gp2bm_gelu(x)


kernels.register("gelu", gelu)
