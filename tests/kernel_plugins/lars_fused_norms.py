"""A multi-tensor LARS the way a vendor writes it: all norms in one pass over the variable list, one update."""
import tensorflow as tf

from tf_gp2bm import kernels


def lars_apply_fused(variables, grads, momentum_slots, lr, momentum, weight_decay, eeta, epsilon, adapt):
  w_norms = tf.sqrt(tf.stack([tf.reduce_sum(tf.square(v)) for v in variables]))
  g_norms = tf.sqrt(tf.stack([tf.reduce_sum(tf.square(g)) for g in grads]))
  trust = tf.where((w_norms > 0) & (g_norms > 0), eeta * w_norms / (g_norms + weight_decay * w_norms + epsilon),
                   1.0)
  for i, (v, g, m, a) in enumerate(zip(variables, grads, momentum_slots, adapt)):
    step = lr * trust[i] * (g + weight_decay * v) if a else lr * g
    m.assign(momentum * m - step)
    v.assign_add(m)


kernels.register("lars_apply", lars_apply_fused)
