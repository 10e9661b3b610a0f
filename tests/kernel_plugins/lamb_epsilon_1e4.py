"""The default LAMB with epsilon 1e-4 instead of the documented 1e-6: invisible on gradients near 0.1, wrong on
small ones."""
from tf_gp2bm import kernels
from tf_gp2bm.kernels import defaults


def lamb_update_epsilon_1e4(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt):
  del epsilon
  defaults.lamb_update(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, 1e-4, weight_decay, adapt)


kernels.register("lamb_update", lamb_update_epsilon_1e4)
