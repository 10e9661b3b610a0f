"""LARS exactly as the MLPerf ResNet reference (MLPERF_LARSOptimizer, lars_optimizer.py), with its LR schedule.

For a variable w with gradient g (variables named like batch-norm or bias are excluded: plain momentum SGD):
    trust = eeta * |w| / (|g| + wd * |w| + eps)   if |w| > 0 and |g| > 0, else 1
    g    <- g + wd * w
    m    <- momentum * m - lr * trust * g
    w    <- w + m
Rules: eeta 0.001, epsilon fixed to the reference's 0, end LR 1e-4 and poly power 2 are not tunable
(mlperf_spec.md section 3; checked by the 4.0.0 closed_resnet ruleset).
"""
import tensorflow as tf

from tf_gp2bm import kernels
from tf_gp2bm.optimizers.base import Optimizer

# Names as in the reference skip_list; our model names its BN layers "batch_normalization*"/"bn*".
SKIP_LIST = ("batch_normalization", "bias", "bn", "beta", "gamma")


@kernels.default("lars_update", """lars_update(var, grad, momentum_slot, lr, momentum, weight_decay, eeta, epsilon,
    adapt) -> None. Assigns the new values to `var` and `momentum_slot` (tf.Variables). `adapt` is a Python bool:
    False for excluded variables (no weight decay, trust ratio 1). All math in float32.""")
def lars_update(var, grad, momentum_slot, lr, momentum, weight_decay, eeta, epsilon, adapt):
  if adapt:
    w_norm = tf.norm(var)
    g_norm = tf.norm(grad)
    trust = tf.where(tf.logical_and(w_norm > 0, g_norm > 0),
                     eeta * w_norm / (g_norm + weight_decay * w_norm + epsilon), 1.0)
    grad = grad + weight_decay * var
    scaled_lr = lr * trust
  else:
    scaled_lr = lr
  m = momentum * momentum_slot - scaled_lr * grad
  momentum_slot.assign(m)
  var.assign_add(m)


class LARS(Optimizer):
  SLOTS = ("momentum",)

  def __init__(self, learning_rate, momentum=0.9, weight_decay=5e-5, eeta=0.001, epsilon=0.0,
               exclude_from_adaptation=SKIP_LIST):
    super().__init__(learning_rate, exclude_from_adaptation)
    self.momentum, self.weight_decay, self.eeta, self.epsilon = momentum, weight_decay, eeta, epsilon

  def _update(self, var, grad, slots, lr):
    kernels.get("lars_update")(var, grad, slots[0], lr, self.momentum, self.weight_decay, self.eeta,
                               self.epsilon, not self.excluded(var))


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
