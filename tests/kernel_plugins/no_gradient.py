"""A layer norm whose gamma and beta are cut off from the gradient (what a custom op without a registered gradient
does to its inputs)."""
import tensorflow as tf

from tf_gp2bm import kernels

_default = kernels.get("layer_norm")


def layer_norm_frozen_affine(x, gamma, beta, epsilon):
  return _default(x, tf.stop_gradient(gamma), tf.stop_gradient(beta), epsilon)


kernels.register("layer_norm", layer_norm_frozen_affine)
