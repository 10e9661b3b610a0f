"""A plugin that visibly changes numerics: each hot spot's output (or learning rate) is halved."""
import tensorflow as tf

from tf_gp2bm import kernels

_defaults = {name: kernels.get(name) for name in kernels.names()}


def _halve_output(name):
  def replacement(*args, **kwargs):
    out = _defaults[name](*args, **kwargs)
    return tf.nest.map_structure(lambda t: t * tf.cast(0.5, t.dtype), out)
  return replacement


def _halve_lr(name):
  def replacement(*args, **kwargs):
    args = list(args)
    if "lr" in kwargs:
      kwargs["lr"] = kwargs["lr"] * 0.5
    else:  # (var(s), grad(s), slot(s)..., lr, ...): the lr is the first argument after the slots
      i = next(i for i in range(2, len(args)) if not isinstance(args[i], (tf.Variable, list)))
      args[i] = args[i] * 0.5
    return _defaults[name](*args, **kwargs)
  return replacement


for _name in kernels.names():
  kernels.register(_name, _halve_lr(_name) if _name.startswith(("lars_", "lamb_")) else _halve_output(_name))
