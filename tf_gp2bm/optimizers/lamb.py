"""LAMB exactly as the MLPerf BERT reference (lamb_optimizer_v1.py, optimization.py), with its LR schedule.

For a variable w with gradient g at update t = 1, 2, ... (mlperf_spec.md section 4):
    m <- beta1 * m + (1 - beta1) * g            v <- beta2 * v + (1 - beta2) * g^2
    m_hat = m / (1 - beta1^t)                   v_hat = v / (1 - beta2^t)
    u = m_hat / (sqrt(v_hat) + eps) + wd * w
    trust = |w| / |u|   (1 if either norm is 0)
    w <- w - lr * trust * u
Variables whose name contains "LayerNorm", "layer_norm" or "bias" get neither the weight decay nor the trust ratio.
Gradient clipping (clip_by_global_norm 1.0 per micro-batch, before the all-reduce) is done by the BERT task.
"""
import tensorflow as tf

from tf_gp2bm import kernels
from tf_gp2bm.optimizers.base import Optimizer

# The reference's exclude_from_weight_decay (also used for exclude_from_layer_adaptation).
EXCLUDE = ("LayerNorm", "layer_norm", "bias")


@kernels.default("lamb_update", """lamb_update(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, epsilon,
    weight_decay, adapt) -> None. Assigns the new values to `var`, `m_slot` and `v_slot` (tf.Variables).
    `step` is the 1-based update number (float32 scalar tensor) for the bias correction; `lr` a float32 scalar
    tensor. `adapt` is a Python bool: False for excluded variables (no weight decay, trust ratio 1).
    All math in float32.""")
def lamb_update(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt):
  m = beta_1 * m_slot + (1.0 - beta_1) * grad
  v = beta_2 * v_slot + (1.0 - beta_2) * tf.square(grad)
  m_hat = m / (1.0 - tf.pow(beta_1, step))
  v_hat = v / (1.0 - tf.pow(beta_2, step))
  update = m_hat / (tf.sqrt(v_hat) + epsilon)
  if adapt:
    update += weight_decay * var
    w_norm = tf.norm(var)
    u_norm = tf.norm(update)
    trust = tf.where(tf.logical_and(w_norm > 0, u_norm > 0), w_norm / tf.maximum(u_norm, 1e-30), 1.0)
  else:
    trust = 1.0
  m_slot.assign(m)
  v_slot.assign(v)
  var.assign_sub(lr * trust * update)


class LAMB(Optimizer):
  SLOTS = ("m", "v")

  def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01,
               exclude_from_adaptation=EXCLUDE):
    super().__init__(learning_rate, exclude_from_adaptation)
    self.beta_1, self.beta_2, self.epsilon, self.weight_decay = beta_1, beta_2, epsilon, weight_decay

  def _update(self, var, grad, slots, lr):
    step = tf.cast(self.iterations + 1, tf.float32)  # `iterations` is incremented after all variables
    kernels.get("lamb_update")(var, grad, slots[0], slots[1], lr, step, self.beta_1, self.beta_2, self.epsilon,
                               self.weight_decay, not self.excluded(var))


class PolynomialDecayWarmup:
  """The reference schedule (optimization.py create_optimizer), as a function of the 0-based update number:

      decayed = (lr - end) * (1 - min(step, train_steps) / train_steps)^power + end       (end 0, power 1)
      warm    = lr * (step - start_warmup_step) / warmup_steps
      lr(step) = warm if warmup_steps > 0 and step - start_warmup_step < warmup_steps, else decayed
  """

  def __init__(self, base_lr, train_steps, warmup_steps=0, start_warmup_step=0, end_lr=0.0, power=1.0):
    self.base_lr, self.train_steps, self.warmup_steps = base_lr, train_steps, warmup_steps
    self.start_warmup_step, self.end_lr, self.power = start_warmup_step, end_lr, power

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    s = tf.minimum(step, float(self.train_steps))
    decayed = (self.base_lr - self.end_lr) * (1.0 - s / self.train_steps) ** self.power + self.end_lr
    if not self.warmup_steps:
      return decayed
    warm_step = step - float(self.start_warmup_step)
    warm = self.base_lr * warm_step / float(self.warmup_steps)
    return tf.where(warm_step < float(self.warmup_steps), warm, decayed)
