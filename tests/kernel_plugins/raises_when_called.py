"""A vendor batch norm that raises as soon as it is called (the model build calls it): a missing device kernel."""
from tf_gp2bm import kernels


def batch_norm(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, training):
  raise RuntimeError(f"acme_bn: no kernel for input of rank {len(x.shape)}")


kernels.register("batch_norm", batch_norm)
