"""A worked vendor-kernel module: `--kernels=examples.vendor_kernels` (see docs/vendor_kernels.md).

It replaces the `batch_norm` hot spot with TensorFlow's fused batch-norm op and `gelu` with the same tanh formula
written as one expression, the way a vendor would plug in its own kernels: same contract, same numerics (up to
floating-point rounding), registered at import time.
"""
import math

import tensorflow as tf

from tf_gp2bm import kernels


def fused_batch_norm(bn_layer, x, training):
  gamma = bn_layer.gamma if bn_layer.gamma is not None else tf.ones_like(bn_layer.moving_mean)
  beta = bn_layer.beta if bn_layer.beta is not None else tf.zeros_like(bn_layer.moving_mean)
  if not training:
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, bn_layer.moving_mean, bn_layer.moving_variance,
                                               epsilon=bn_layer.epsilon, is_training=False)
    return y
  y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=bn_layer.epsilon, is_training=True)
  # Keras keeps the unbiased (Bessel-corrected) variance from the fused op as its moving statistic.
  m = bn_layer.momentum
  bn_layer.moving_mean.assign(bn_layer.moving_mean * m + mean * (1 - m))
  bn_layer.moving_variance.assign(bn_layer.moving_variance * m + variance * (1 - m))
  return y


def gelu_tanh(x):
  c = tf.cast(math.sqrt(2.0 / math.pi), x.dtype)
  return 0.5 * x * (1.0 + tf.tanh(c * (x + tf.cast(0.044715, x.dtype) * x * x * x)))


kernels.register("batch_norm", fused_batch_norm)
kernels.register("gelu", gelu_tanh)
