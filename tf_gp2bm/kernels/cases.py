"""Contract-shaped inputs for each hot spot, per precision and call site (used by tf_gp2bm.kernel_check).

Small sizes with BERT/ResNet's structure; the dtypes are those each call site passes (docs/vendor_kernels.md).
A case is (label, arguments); float tensors among the arguments are what gradients are taken with respect to.
"""
import zlib

import numpy as np
import tensorflow as tf

COMPUTE = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}
BATCH, SEQ, HIDDEN, HEADS, INNER = 2, 16, 64, 4, 128
DROPOUT = 0.1
SEED = tf.constant([7, 11], tf.int32)


class _Random:
  def __init__(self, name, precision):
    self.rng = np.random.default_rng(zlib.crc32(f"{name}/{precision}".encode()))

  def normal(self, shape, dtype=tf.float32, scale=1.0, mean=0.0):
    return tf.cast(self.rng.normal(mean, scale, size=shape).astype(np.float32), dtype)


def _padding_mask(dtype):
  lengths = np.array([SEQ, SEQ - 5])
  keys = np.arange(SEQ)[None, :] < lengths[:, None]
  return tf.constant(np.broadcast_to(keys[:, None, :], (BATCH, SEQ, SEQ)), dtype)


def _packed_mask(dtype):
  segments = np.array([0] * 6 + [1] * 7 + [2] * 3)  # three sequences packed into one row
  block = segments[:, None] == segments[None, :]
  return tf.constant(np.broadcast_to(block, (BATCH, SEQ, SEQ)), dtype)


def _dropout_variants(base):
  return [("inference", dict(base, dropout_rate=DROPOUT, seed=None, training=False)),
          ("training, dropout", dict(base, dropout_rate=DROPOUT, seed=SEED, training=True))]


def batch_norm(r, c):
  x = r.normal([4, 8, 8, 16], c, 2.0, 0.5)
  args = dict(x=x, gamma=r.normal([16], scale=0.1, mean=1.0), beta=r.normal([16], scale=0.1),
              moving_mean=r.normal([16], scale=0.1), moving_variance=tf.abs(r.normal([16])) + 0.5, momentum=0.9,
              epsilon=1e-5)
  return [("training", dict(args, training=True)), ("inference", dict(args, training=False))]


def layer_norm(r, c):
  def args(dtype):
    return dict(x=r.normal([BATCH, SEQ, HIDDEN], dtype, 1.0, 0.3), gamma=r.normal([HIDDEN], scale=0.1, mean=1.0),
                beta=r.normal([HIDDEN], scale=0.1), epsilon=1e-12)
  return [("embeddings (float32)", args(tf.float32)), (f"MLM head ({c.name})", args(c))]


def gelu(r, c):
  return [(f"MLM transform ({c.name})", dict(x=r.normal([BATCH, 4, HIDDEN], c, 2.0)))]


def bias_gelu(r, c):
  dtype = tf.float16 if c == tf.float16 else tf.float32  # the garden runs this activation in float32 under bf16
  return [(f"feed-forward ({dtype.name})", dict(x=r.normal([BATCH, SEQ, INNER], dtype, 2.0),
                                                bias=r.normal([INNER], dtype, 0.1)))]


def attention_core(r, c):
  head = HIDDEN // HEADS
  cases = []
  for label, mask in (("padding mask", _padding_mask(c)), ("packed, block-diagonal mask", _packed_mask(c))):
    base = dict(query=r.normal([BATCH, SEQ, HEADS, head], c), key=r.normal([BATCH, SEQ, HEADS, head], c),
                value=r.normal([BATCH, SEQ, HEADS, head], c), mask=mask)
    cases += [(f"{label}, {variant}", args) for variant, args in _dropout_variants(base)]
  return cases


def self_attention(r, c):
  base = dict(x=r.normal([BATCH, SEQ, HIDDEN], c), qkv_kernel=r.normal([HIDDEN, 3 * HIDDEN], c, 0.1),
              qkv_bias=r.normal([3 * HIDDEN], c, 0.1), output_kernel=r.normal([HIDDEN, HIDDEN], c, 0.1),
              output_bias=r.normal([HIDDEN], c, 0.1), num_heads=HEADS)
  return ([(f"padding mask, {v}", dict(args, mask=_padding_mask(c))) for v, args in _dropout_variants(base)]
          + [("packed, block-diagonal mask", dict(base, mask=_packed_mask(c), dropout_rate=DROPOUT, seed=None,
                                                  training=False))])


def residual_dropout_layer_norm(r, c):
  cases = []
  for site, dtype in (("after attention", c), ("after feed-forward", tf.float32)):
    base = dict(x=r.normal([BATCH, SEQ, HIDDEN], dtype), residual=r.normal([BATCH, SEQ, HIDDEN], dtype),
                gamma=r.normal([HIDDEN], scale=0.1, mean=1.0), beta=r.normal([HIDDEN], scale=0.1), epsilon=1e-12)
    cases += [(f"{site} ({dtype.name}), {v}", args) for v, args in _dropout_variants(base)]
  return cases


def mlm_softmax_cross_entropy(r, c):
  n, vocab = 8, 128
  labels = tf.constant(r.rng.integers(0, vocab, size=[n]), tf.int32)
  weights = tf.constant([1.0] * 6 + [0.0] * 2)  # padded predictions weigh 0
  return [(f"logits {c.name}", dict(logits=r.normal([n, vocab], c, 2.0), labels=labels, weights=weights))]


FORWARD = {f.__name__: f for f in (batch_norm, layer_norm, gelu, bias_gelu, attention_core, self_attention,
                                   residual_dropout_layer_norm, mlm_softmax_cross_entropy)}


def forward_cases(name, precision):
  return FORWARD[name](_Random(name, precision), COMPUTE[precision])


# Optimizer hot spots: a variable list like the models' (adapted kernels, excluded norms/biases, one all-zero
# variable for the |w| = 0 branch) and per-step gradients (one all-zero, for the |g| = 0 branch). The epsilons only
# matter where the norms are as small as they are: "tiny/kernel" has |w| ~ 1e-6 and |g| ~ 1e-8, so LARS's 1e-7 and
# LAMB's 1e-6 decide its update (a vendor's 1e-5 differs by far more than the tolerance); "wide/kernel" spans
# 1e-6 .. 1e3 in one tensor, so a norm computed in low precision or without care for overflow shows.
OPTIMIZER_VARIABLES = (("conv/kernel", (3, 3, 8, 16), True), ("bn/gamma", (16,), False),
                       ("dense/kernel", (16, 10), True), ("dense/bias", (10,), False),
                       ("zero_init/kernel", (4, 4), True), ("tiny/kernel", (8, 8), True),
                       ("wide/kernel", (32, 8), True))
SCALE = {"tiny/kernel": (1e-7, 1e-9)}  # (weight, gradient) element scale; 1 and 0.1 otherwise


def _wide(r, shape):
  """Magnitudes log-uniform over 1e-6 .. 1e3 with random signs."""
  magnitude = 10.0 ** r.uniform(-6, 3, size=shape)
  return (magnitude * r.choice([-1.0, 1.0], size=shape)).astype(np.float32)


def optimizer_state(seed):
  r = np.random.default_rng(seed)
  values = []
  for n, s, _ in OPTIMIZER_VARIABLES:
    if n.startswith("zero"):
      values.append(np.zeros(s, np.float32))
    elif n.startswith("wide"):
      values.append(_wide(r, s))
    else:
      values.append((r.normal(size=s) * SCALE.get(n, (1.0,))[0]).astype(np.float32))
  adapt = [a for _, _, a in OPTIMIZER_VARIABLES]
  names = [n for n, _, _ in OPTIMIZER_VARIABLES]
  return names, values, adapt


def optimizer_grads(step, seed=1):
  r = np.random.default_rng(seed + step)
  grads = [_wide(r, s) * 1e-3 if n.startswith("wide") else
           (r.normal(size=s) * SCALE.get(n, (1.0, 0.1))[1]).astype(np.float32) for n, s, _ in OPTIMIZER_VARIABLES]
  grads[1] = np.zeros_like(grads[1]) if step == 0 else grads[1]
  grads[2] = np.zeros_like(grads[2]) if step == 1 else grads[2]  # |g| = 0 on an adapted variable
  return [tf.constant(g) for g in grads]


def optimizer_slots(name):
  """The slot names of an optimizer hot spot, in the order the hot spot takes them."""
  return ("momentum",) if name.startswith("lars") else ("m", "v")


def optimizer_scalars(name, lr, step):
  """The scalar arguments of each optimizer hot spot, as the optimizers pass them."""
  if name.startswith("lars"):
    return dict(lr=lr, momentum=0.9, weight_decay=5e-5, eeta=0.001, epsilon=1e-7)
  return dict(lr=lr, step=step, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01)
