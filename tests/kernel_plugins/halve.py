"""A plugin that visibly changes numerics: each hot spot's output (or update) is halved."""
import tensorflow as tf

from tf_gp2bm import kernels

_defaults = {name: kernels.get(name) for name in kernels.names()}


def _halve_output(name):
  def replacement(*args, **kwargs):
    out = _defaults[name](*args, **kwargs)
    return tf.nest.map_structure(lambda t: t * tf.cast(0.5, t.dtype), out)
  return replacement


def _halve_lr(name):
  def replacement(var, grad, *rest):
    slots_and_lr = list(rest)
    # signature: (var, grad, slot(s)..., lr, ...): the lr is the first float tensor/number after the slots
    for i, a in enumerate(slots_and_lr):
      if not isinstance(a, tf.Variable):
        slots_and_lr[i] = a * 0.5
        break
    return _defaults[name](var, grad, *slots_and_lr)
  return replacement


for _name in kernels.names():
  kernels.register(_name, _halve_lr(_name) if _name.endswith("_update") else _halve_output(_name))
