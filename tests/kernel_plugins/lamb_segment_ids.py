"""The vendor's full-size bug: a multi-tensor LAMB that is numerically right (it passes every parity row) but keeps
the segment id of every element of every variable as a constant, so its compiled step holds an int32 per parameter
(1.3 GB at BERT-large, where the vendor's export died). Only `kernel_check --full_size` sees it."""
import numpy as np
import tensorflow as tf

from tf_gp2bm import kernels

from . import lamb_parts


def _flat(tensors):
  return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def lamb_apply_segment_ids(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay,
                           adapt):
  sizes = [v.shape.num_elements() for v in variables]
  segment_ids = tf.constant(np.repeat(np.arange(len(sizes), dtype=np.int32), sizes))  # the fault: one per element
  ms, vs, updates = lamb_parts.moments_and_updates(variables, grads, m_slots, v_slots, step, beta_1, beta_2, epsilon,
                                                   weight_decay, adapt)
  # every variable's norms in one segmented reduction over the flattened model
  w_norms = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(_flat(variables)), segment_ids, len(sizes)))
  u_norms = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(_flat(updates)), segment_ids, len(sizes)))
  lamb_parts.apply(variables, m_slots, v_slots, ms, vs, updates, w_norms, u_norms, lr, adapt)


kernels.register("lamb_apply", lamb_apply_segment_ids)
