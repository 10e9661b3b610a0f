"""A plugin that changes nothing and records the dropout masks of every encoder layer's residual dropout: each call
appends a digest of the kept-unit mask to $DROPOUT_MASK_DIR/rank<R>.txt, so a test can compare the masks that the
ranks of one run drew."""
import hashlib
import os

import tensorflow as tf

from tf_gp2bm import kernels
from tf_gp2bm.runtime import launcher_rank

_default = kernels.get("residual_dropout_layer_norm")


def _append(kept):
  path = os.path.join(os.environ["DROPOUT_MASK_DIR"], f"rank{launcher_rank() or 0}.txt")
  with open(path, "a") as f:
    f.write(hashlib.sha256(kept.numpy().tobytes()).hexdigest()[:16] + "\n")
  return []


def residual_dropout_layer_norm(x, residual, gamma, beta, epsilon, dropout_rate, seed, training):
  if training and dropout_rate and seed is not None:
    # The default's dropout is stateless: the same seed gives the same mask, so this is the mask it applies.
    kept = tf.nn.experimental.stateless_dropout(tf.ones_like(x), rate=dropout_rate, seed=seed) > 0
    tf.py_function(_append, [kept], [])
  return _default(x, residual, gamma, beta, epsilon, dropout_rate, seed, training)


kernels.register("residual_dropout_layer_norm", residual_dropout_layer_norm)
