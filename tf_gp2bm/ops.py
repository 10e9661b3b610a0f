"""Default implementations of the model-side kernel hot spots (see tf_gp2bm.kernels).

Models call `kernels.get(name)` while they are traced, so a vendor's replacement lands in the compiled step.
"""
import math

import tensorflow as tf
from tf_keras.src.layers.normalization.batch_normalization import BatchNormalization

from tf_gp2bm import kernels


@kernels.default("batch_norm", """batch_norm(bn_layer, x, training) -> y. `bn_layer` is the model garden's Keras
    BatchNormalization layer (gamma, beta, moving_mean, moving_variance, momentum, epsilon); in training it must
    normalize with the batch statistics and update the moving statistics, in inference use the moving ones.
    ResNet's ReLU follows as its own op, which XLA fuses with a replacement's output.""")
def batch_norm(bn_layer, x, training):
  # The Keras class itself (not tf_keras.layers.BatchNormalization, which model building swaps for a while).
  return BatchNormalization.call(bn_layer, x, training=training)


@kernels.default("layer_norm", """layer_norm(ln_layer, x) -> y. `ln_layer` is the Keras LayerNormalization
    layer (gamma/beta, epsilon); normalizes over the last axis.""")
def layer_norm(ln_layer, x):
  return ln_layer(x)


@kernels.default("gelu", """gelu(x) -> y. The tanh approximation the BERT reference computes:
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).""")
def gelu(x):
  return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


@kernels.default("attention_core", """attention_core(query, key, value, attention_mask, dropout_rate, training)
    -> context. query/key/value: [batch, seq, heads, head_dim]; attention_mask: [batch, seq_q, seq_k], 1 = attend;
    returns [batch, seq, heads, head_dim]. Softmax in float32.""")
def attention_core(query, key, value, attention_mask, dropout_rate, training):
  depth = tf.cast(tf.shape(query)[-1], query.dtype)
  scores = tf.einsum("bqhd,bkhd->bhqk", query, key) / tf.sqrt(depth)
  scores = tf.cast(scores, tf.float32)
  if attention_mask is not None:
    scores += (1.0 - tf.cast(attention_mask[:, None, :, :], tf.float32)) * -10000.0
  probs = tf.nn.softmax(scores, axis=-1)
  if training and dropout_rate > 0:
    probs = tf.nn.dropout(probs, rate=dropout_rate)
  return tf.einsum("bhqk,bkhd->bqhd", tf.cast(probs, value.dtype), value)


@kernels.default("mlm_softmax_cross_entropy", """mlm_softmax_cross_entropy(logits, labels, weights) ->
    (loss, correct, count). logits [n, vocab] (any float dtype), labels [n] int, weights [n] float.
    loss = sum(w * nll) / (sum(w) + 1e-5) as the reference; correct = sum(w * (argmax == label)); count = sum(w).""")
def mlm_softmax_cross_entropy(logits, labels, weights):
  logits = tf.cast(logits, tf.float32)
  weights = tf.cast(weights, tf.float32)
  nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  loss = tf.reduce_sum(weights * nll) / (tf.reduce_sum(weights) + 1e-5)
  correct = tf.reduce_sum(weights * tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels),
                                            tf.float32))
  return loss, correct, tf.reduce_sum(weights)
