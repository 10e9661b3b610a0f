"""Default implementations of the model-side kernel hot spots (see tf_gp2bm.kernels).

Models call `kernels.get(name)` while they are traced, so a vendor's replacement lands in the compiled step.
"""
import math

import tensorflow as tf
from tf_keras.src.layers.attention.multi_head_attention import MultiHeadAttention
from tf_keras.src.layers.normalization.batch_normalization import BatchNormalization
from tf_keras.src.layers.normalization.layer_normalization import LayerNormalization

from tf_gp2bm import kernels


@kernels.default("batch_norm", """batch_norm(bn_layer, x, training) -> y. `bn_layer` is the model garden's Keras
    BatchNormalization layer (gamma, beta, moving_mean, moving_variance, momentum, epsilon); in training it must
    normalize with the batch statistics and update the moving statistics, in inference use the moving ones.
    ResNet's ReLU follows as its own op, which XLA fuses with a replacement's output.""")
def batch_norm(bn_layer, x, training):
  # The Keras classes themselves (not tf_keras.layers.*, which model building swaps for a while).
  return BatchNormalization.call(bn_layer, x, training=training)


@kernels.default("layer_norm", """layer_norm(ln_layer, x) -> y. `ln_layer` is the Keras LayerNormalization
    layer (gamma, beta, epsilon, axis = last); BERT's embedding, attention-output, FFN-output and MLM-transform
    layer norms all come through here.""")
def layer_norm(ln_layer, x):
  return LayerNormalization.call(ln_layer, x)


@kernels.default("gelu", """gelu(x) -> y. The tanh approximation the BERT reference computes:
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).""")
def gelu(x):
  return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


@kernels.default("attention_core", """attention_core(attention_layer, query, key, value, attention_mask, training)
    -> context. The core of the model garden's self-attention (Keras MultiHeadAttention) after the input projections:
    query [batch, seq_q, heads, head_dim], key/value [batch, seq_k, heads, head_dim], attention_mask
    [batch, seq_q, seq_k] with 1 = attend (or None); scale by 1/sqrt(head_dim), masked softmax, attention dropout
    at rate `attention_layer._dropout` when training; returns context [batch, seq_q, heads, head_dim].""")
def attention_core(attention_layer, query, key, value, attention_mask, training):
  context, _ = MultiHeadAttention._compute_attention(attention_layer, query, key, value, attention_mask, training)
  return context


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
