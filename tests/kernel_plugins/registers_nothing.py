"""A kernel module that forgot to register anything."""
import tensorflow as tf  # noqa: F401


def layer_norm(x, gamma, beta, epsilon):
  return x
