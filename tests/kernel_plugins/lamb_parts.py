"""The parts of a multi-tensor LAMB that the test plugins share (no registration here): the per-variable moments and
updates, and applying them with each variable's trust ratio from stacked norms. The plugins differ only in how they
take the norms."""
import tensorflow as tf


def moments_and_updates(variables, grads, m_slots, v_slots, step, beta_1, beta_2, epsilon, weight_decay, adapt):
  ms, vs, updates = [], [], []
  for w, g, m_slot, v_slot, a in zip(variables, grads, m_slots, v_slots, adapt):
    m = beta_1 * m_slot + (1.0 - beta_1) * g
    v = beta_2 * v_slot + (1.0 - beta_2) * tf.square(g)
    update = (m / (1.0 - tf.pow(beta_1, step))) / (tf.sqrt(v / (1.0 - tf.pow(beta_2, step))) + epsilon)
    ms.append(m)
    vs.append(v)
    updates.append(update + weight_decay * w if a else update)
  return ms, vs, updates


def apply(variables, m_slots, v_slots, ms, vs, updates, w_norms, u_norms, lr, adapt):
  trust = tf.where((w_norms > 0) & (u_norms > 0), w_norms / tf.maximum(u_norms, 1e-30), 1.0)
  for i, (w, m_slot, v_slot, m, v, update, a) in enumerate(zip(variables, m_slots, v_slots, ms, vs, updates, adapt)):
    m_slot.assign(m)
    v_slot.assign(v)
    w.assign_sub(lr * (trust[i] if a else 1.0) * update)
