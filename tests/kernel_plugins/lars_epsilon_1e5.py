"""The default LARS with epsilon 1e-5 instead of the documented 1e-7: invisible on norms near 1, wrong on small ones."""
from tf_gp2bm import kernels
from tf_gp2bm.kernels import defaults


def lars_apply_epsilon_1e5(variables, grads, momentum_slots, lr, momentum, weight_decay, eeta, epsilon, adapt):
  del epsilon
  defaults.lars_apply(variables, grads, momentum_slots, lr, momentum, weight_decay, eeta, 1e-5, adapt)


kernels.register("lars_apply", lars_apply_epsilon_1e5)
