"""The default batch norm under a vendor's name scope: how a replacement can be found in exported HLO (op_name
metadata keeps TensorFlow name scopes)."""
import tensorflow as tf

from tf_gp2bm import kernels

SCOPE = "acme_batch_norm"
_default = kernels.get("batch_norm")


def batch_norm(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, training):
  with tf.name_scope(SCOPE):
    return _default(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, training)


kernels.register("batch_norm", batch_norm)
