"""LAMB exactly as the MLPerf BERT reference (lamb_optimizer_v1.py, optimization.py), with its LR schedule.

For a variable w with gradient g at update t = 1, 2, ... (mlperf_spec.md section 4):
    m <- beta1 * m + (1 - beta1) * g            v <- beta2 * v + (1 - beta2) * g^2
    m_hat = m / (1 - beta1^t)                   v_hat = v / (1 - beta2^t)
    u = m_hat / (sqrt(v_hat) + eps) + wd * w
    trust = |w| / |u|   (1 if either norm is 0)
    w <- w - lr * trust * u
Variables whose name contains "LayerNorm", "layer_norm" or "bias" get neither the weight decay nor the trust ratio.
Gradient clipping (clip_by_global_norm 1.0 per micro-batch, before the all-reduce) is done by the BERT task.
The update itself is the kernel hot spot `lamb_apply` (default in tf_gp2bm.kernels.defaults). The reference keeps
beta^t as running products; the default computes the same powers with tf.pow.
"""
import tensorflow as tf

from tf_gp2bm import kernels
from tf_gp2bm.optimizers.base import Optimizer

# The reference's exclude_from_weight_decay (also used for exclude_from_layer_adaptation).
EXCLUDE = ("LayerNorm", "layer_norm", "bias")


class LAMB(Optimizer):
  SLOTS = ("m", "v")

  def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01,
               exclude_from_adaptation=EXCLUDE):
    super().__init__(learning_rate, exclude_from_adaptation)
    self.beta_1, self.beta_2, self.epsilon, self.weight_decay = beta_1, beta_2, epsilon, weight_decay

  def _apply_all(self, variables, grads, slots, lr):
    step = tf.cast(self.iterations + 1, tf.float32)  # `iterations` is incremented after the update
    kernels.get("lamb_apply")(variables, grads, slots["m"], slots["v"], lr, step, self.beta_1, self.beta_2,
                              self.epsilon, self.weight_decay, [not self.excluded(v) for v in variables])


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
