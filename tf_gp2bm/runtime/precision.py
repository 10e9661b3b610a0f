"""Mixed precision: the Keras dtype policy plus dynamic loss scaling for fp16.

Loss scaling is done here rather than with LossScaleOptimizer so the scale update lives inside the single XLA
train step and works the same with our own LARS/LAMB and with all three distribution back-ends.
"""
import tensorflow as tf
import tf_keras

from tf_gp2bm.errors import InputError

POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


class Precision:
  """--precision=fp16|bf16|fp32. Create before building the model (it sets the global Keras policy)."""

  INITIAL_SCALE = 2.0 ** 15
  GROWTH_INTERVAL = 2000  # good steps before the scale doubles (the Keras default)

  def __init__(self, name):
    if name not in POLICIES:
      raise InputError(f"--precision={name!r}: expected one of {', '.join(POLICIES)}")
    self.name = name
    tf_keras.mixed_precision.set_global_policy(POLICIES[name])
    self.loss_scaling = name == "fp16"
    self.scale = self.good_steps = None

  def build(self):
    """Creates the loss-scale state (call inside the runtime scope)."""
    if self.loss_scaling:
      self.scale = tf.Variable(self.INITIAL_SCALE, trainable=False, dtype=tf.float32, name="loss_scale")
      self.good_steps = tf.Variable(0, trainable=False, dtype=tf.int64, name="loss_scale_good_steps")

  @property
  def variables(self):
    return [self.scale, self.good_steps] if self.loss_scaling else []

  def scale_loss(self, loss):
    return loss * self.scale if self.loss_scaling else loss

  def unscale(self, grads):
    if not self.loss_scaling:
      return grads
    inv = 1.0 / self.scale
    return [None if g is None else tf.cast(g, tf.float32) * inv for g in grads]

  def update(self, grads):
    """After the all-reduce: returns a bool tensor "apply this step" and adjusts the scale.

    Every rank sees the same reduced gradients, so every rank takes the same decision.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
    if not self.loss_scaling:
      return finite
    grow = tf.logical_and(finite, self.good_steps + 1 >= self.GROWTH_INTERVAL)
    self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale),
                               tf.maximum(self.scale * 0.5, 1.0)))
    self.good_steps.assign(tf.where(finite, tf.where(grow, tf.zeros_like(self.good_steps), self.good_steps + 1),
                                    tf.zeros_like(self.good_steps)))
    return finite
