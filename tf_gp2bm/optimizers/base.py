"""Common state of our optimizers: the variable list, slots, the update counter and the LR schedule."""
import tensorflow as tf


class Optimizer:
  """Subclasses list slot names in SLOTS and implement `_apply_all(variables, grads, slots, lr)`, one call over
  every variable that has a gradient (`slots`: {slot name: list aligned with `variables`})."""

  SLOTS = ()

  def __init__(self, learning_rate, exclude_from_adaptation=()):
    self.learning_rate = learning_rate  # callable: int64 step -> float32 lr
    self.exclude_from_adaptation = tuple(exclude_from_adaptation)
    self.iterations = None
    self.slots = {}

  def excluded(self, var):
    """True for variables that get neither weight decay nor the trust ratio (BN/LayerNorm and biases)."""
    return any(key in var.name for key in self.exclude_from_adaptation)

  def build(self, variables):
    self.vars = list(variables)
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
    for name in self.SLOTS:
      self.slots[name] = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"{v.name.split(':')[0]}/{name}")
                          for v in self.vars]
    return self

  @property
  def variables(self):
    return [self.iterations] + [s for name in self.SLOTS for s in self.slots[name]]

  def current_learning_rate(self):
    return self.learning_rate(self.iterations)

  def apply(self, grads):
    lr = tf.cast(self.learning_rate(self.iterations), tf.float32)
    present = [i for i, g in enumerate(grads) if g is not None]
    variables = [self.vars[i] for i in present]
    self._apply_all(variables, [tf.cast(grads[i], self.vars[i].dtype) for i in present],
                    {n: [self.slots[n][i] for i in present] for n in self.SLOTS}, lr)
    self.iterations.assign_add(1)
