"""LARS exactly as the MLPerf ResNet reference (MLPERF_LARSOptimizer, lars_optimizer.py), with its LR schedule.

For a variable w with gradient g (variables named like batch-norm or bias are excluded: plain momentum SGD):
    trust = eeta * |w| / (|g| + wd * |w| + eps)   if |w| > 0 and |g| > 0, else 1
    g    <- g + wd * w
    m    <- momentum * m - lr * trust * g
    w    <- w + m
The update itself is the kernel hot spot `lars_apply` (default in tf_gp2bm.kernels.defaults).
Rules: eeta 0.001, epsilon fixed to the reference's 0 (computed as 1e-7, see KERAS_EPSILON), end LR 1e-4 and
poly power 2 are not tunable (mlperf_spec.md section 3; checked by the 4.0.0 closed_resnet ruleset).
"""
import tensorflow as tf

from tf_gp2bm import kernels
from tf_gp2bm.optimizers.base import Optimizer

# Names as in the reference skip_list; our model names its BN layers "batch_normalization*"/"bn*".
SKIP_LIST = ("batch_normalization", "bias", "bn", "beta", "gamma")

# The reference replaces an epsilon of 0 by the Keras epsilon (`epsilon or backend_config.epsilon()`), so the
# logged lars_epsilon is 0 while the trust-ratio denominator carries 1e-7.
KERAS_EPSILON = 1e-7


class LARS(Optimizer):
  SLOTS = ("momentum",)

  def __init__(self, learning_rate, momentum=0.9, weight_decay=5e-5, eeta=0.001, epsilon=0.0,
               exclude_from_adaptation=SKIP_LIST):
    super().__init__(learning_rate, exclude_from_adaptation)
    self.momentum, self.weight_decay, self.eeta = momentum, weight_decay, eeta
    self.epsilon = epsilon or KERAS_EPSILON

  def _apply_all(self, variables, grads, slots, lr):
    kernels.get("lars_apply")(variables, grads, slots["momentum"], lr, self.momentum, self.weight_decay, self.eeta,
                              self.epsilon, [not self.excluded(v) for v in variables])


class PolynomialWarmup:
  """The reference PolynomialDecayWithWarmup (lars_util.py).

  lr(step) = base * step / warmup_steps                                 while step < warmup_steps
           = (base - end) * (1 - min(s, decay_steps)/decay_steps)^power + end,  s = step - warmup_steps
  with decay_steps = train_steps - warmup_steps + 1.
  """

  def __init__(self, base_lr, warmup_steps, train_steps, end_lr=1e-4, power=2.0):
    self.base_lr, self.warmup_steps, self.end_lr, self.power = base_lr, warmup_steps, end_lr, power
    self.decay_steps = train_steps - warmup_steps + 1

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = self.base_lr * step / max(self.warmup_steps, 1)
    s = tf.minimum(step - self.warmup_steps, float(self.decay_steps))
    poly = (self.base_lr - self.end_lr) * (1.0 - s / self.decay_steps) ** self.power + self.end_lr
    return tf.where(step < self.warmup_steps, warm, poly)
