"""A well-behaved multi-tensor LAMB: every variable's norms in one stacked pass, nothing per element beyond the
default's own buffers (kernel_check --full_size: within the margin)."""
import tensorflow as tf

from tf_gp2bm import kernels

from . import lamb_parts


def lamb_apply_fused_norms(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay,
                           adapt):
  ms, vs, updates = lamb_parts.moments_and_updates(variables, grads, m_slots, v_slots, step, beta_1, beta_2, epsilon,
                                                   weight_decay, adapt)
  w_norms = tf.sqrt(tf.stack([tf.reduce_sum(tf.square(w)) for w in variables]))
  u_norms = tf.sqrt(tf.stack([tf.reduce_sum(tf.square(u)) for u in updates]))
  lamb_parts.apply(variables, m_slots, v_slots, ms, vs, updates, w_norms, u_norms, lr, adapt)


kernels.register("lamb_apply", lamb_apply_fused_norms)
