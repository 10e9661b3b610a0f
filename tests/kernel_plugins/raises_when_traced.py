"""A vendor LARS apply that raises only while the train step is traced (the graph's tensors have no value)."""
import tensorflow as tf

from tf_gp2bm import kernels


def lars_apply(variables, grads, momentum_slots, lr, momentum, weight_decay, eeta, epsilon, adapt):
  if not tf.executing_eagerly():
    raise NotImplementedError("acme_lars: graph mode is not supported")


kernels.register("lars_apply", lars_apply)
