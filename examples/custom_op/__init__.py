"""A worked compiled custom op as a vendor kernel module: `--kernels=examples.custom_op`.

Replaces the `gelu` hot spot (and through bias_gelu's default, BERT's feed-forward activation) with the C++ op
Gp2bmGelu from gelu_op.cc, whose gradient is the C++ op Gp2bmGeluGrad. The library is the file named by
$GP2BM_GELU_OP_LIBRARY, or built on first use into build/ next to this file (examples/custom_op/build.py). It is
loaded on first use, not at import, so `python -m examples.custom_op.build --out=DIR` (which imports this package
first) writes only into DIR.
The op has only a CPU kernel and no XLA kernel: run with --xla=false (docs/vendor_kernels.md).
"""
import os

import tensorflow as tf

from examples.custom_op import build
from tf_gp2bm import kernels

LIBRARY_ENV = "GP2BM_GELU_OP_LIBRARY"

_loaded = []


def _ops():
  if not _loaded:
    path = os.environ.get(LIBRARY_ENV) or build.build(os.path.join(os.path.dirname(__file__), "build"))
    _loaded.append(tf.load_op_library(path))
  return _loaded[0]


@tf.RegisterGradient("Gp2bmGelu")
def _gelu_gradient(op, dy):
  return _ops().gp2bm_gelu_grad(dy, op.inputs[0])


def gelu(x):
  return _ops().gp2bm_gelu(x)


kernels.register("gelu", gelu)
