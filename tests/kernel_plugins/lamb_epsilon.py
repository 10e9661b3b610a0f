"""A LAMB whose only fault is its epsilon: 1e-5 where the contract says 1e-6."""
from tf_gp2bm import kernels

_default = kernels.get("lamb_update")


def lamb_update_loose_epsilon(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt):
  _default(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, 1e-5, weight_decay, adapt)


kernels.register("lamb_update", lamb_update_loose_epsilon)
