"""A worked vendor-kernel module: `--kernels=examples.vendor_kernels` (see docs/vendor_kernels.md).

It replaces three hot spots the way a vendor plugs in its own kernels: same contract (tensors in, tensors out),
different implementation, same mathematics up to floating-point rounding, registered at import time. Check it with
`python -m tf_gp2bm.kernel_check --kernels=examples.vendor_kernels`.
"""
import math

import tensorflow as tf

from tf_gp2bm import kernels


def batch_norm_from_moments(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, training):
  """Batch norm from explicit moments instead of the fused op."""
  if training:
    mean, variance = tf.nn.moments(tf.cast(x, tf.float32), [0, 1, 2])
    count = tf.cast(tf.size(x) // tf.size(mean), tf.float32)
    unbiased = variance * count / (count - 1.0)
    new_mean = moving_mean + (mean - moving_mean) * (1.0 - momentum)
    new_variance = moving_variance + (unbiased - moving_variance) * (1.0 - momentum)
  else:
    mean, variance, new_mean, new_variance = moving_mean, moving_variance, moving_mean, moving_variance
  scale = gamma * tf.math.rsqrt(variance + epsilon)
  y = tf.cast(x, tf.float32) * scale + (beta - mean * scale)
  return tf.cast(y, x.dtype), new_mean, new_variance


def layer_norm_one_pass(x, gamma, beta, epsilon):
  """Layer norm with both moments from one pass over the data: var = E[x^2] - E[x]^2."""
  h = tf.cast(x, tf.float32)
  mean = tf.reduce_mean(h, -1, keepdims=True)
  variance = tf.maximum(tf.reduce_mean(tf.square(h), -1, keepdims=True) - tf.square(mean), 0.0)
  return tf.cast((h - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta, x.dtype)


def gelu_tanh(x):
  c = tf.cast(math.sqrt(2.0 / math.pi), x.dtype)
  return 0.5 * x * (1.0 + tf.tanh(c * (x + tf.cast(0.044715, x.dtype) * x * x * x)))


kernels.register("batch_norm", batch_norm_from_moments)
kernels.register("layer_norm", layer_norm_one_pass)
kernels.register("gelu", gelu_tanh)
