"""The vendor's full-size bug: a multi-tensor LAMB that is numerically right (it passes every parity row) but keeps
the segment id of every element of every variable as a constant, so its compiled step holds an int32 per parameter
(1.3 GB at BERT-large, where the vendor's export died). Only `kernel_check --full_size` sees it."""
import numpy as np
import tensorflow as tf

from tf_gp2bm import kernels


def _flat(tensors):
  return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def lamb_apply_segment_ids(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay,
                           adapt):
  sizes = [v.shape.num_elements() for v in variables]
  segment_ids = tf.constant(np.repeat(np.arange(len(sizes), dtype=np.int32), sizes))  # the fault: one per element
  ms, vs, updates = [], [], []
  for w, g, m_slot, v_slot, a in zip(variables, grads, m_slots, v_slots, adapt):
    m = beta_1 * m_slot + (1.0 - beta_1) * g
    v = beta_2 * v_slot + (1.0 - beta_2) * tf.square(g)
    update = (m / (1.0 - tf.pow(beta_1, step))) / (tf.sqrt(v / (1.0 - tf.pow(beta_2, step))) + epsilon)
    ms.append(m)
    vs.append(v)
    updates.append(update + weight_decay * w if a else update)
  # every variable's norms in one segmented reduction over the flattened model
  w_norms = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(_flat(variables)), segment_ids, len(sizes)))
  u_norms = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(_flat(updates)), segment_ids, len(sizes)))
  trust = tf.where((w_norms > 0) & (u_norms > 0), w_norms / tf.maximum(u_norms, 1e-30), 1.0)
  for i, (w, m_slot, v_slot, m, v, update, a) in enumerate(zip(variables, m_slots, v_slots, ms, vs, updates, adapt)):
    m_slot.assign(m)
    v_slot.assign(v)
    w.assign_sub(lr * (trust[i] if a else 1.0) * update)


kernels.register("lamb_apply", lamb_apply_segment_ids)
