"""A classic vendor mistake: attention_core returns [batch, heads, seq, head_dim] instead of [batch, seq, heads,
head_dim]."""
import tensorflow as tf

from tf_gp2bm import kernels

_default = kernels.get("attention_core")


def attention_heads_first(query, key, value, mask, dropout_rate, seed, training):
  return tf.transpose(_default(query, key, value, mask, dropout_rate, seed, training), [0, 2, 1, 3])


kernels.register("attention_core", attention_heads_first)
