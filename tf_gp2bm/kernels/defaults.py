"""Default implementations of the kernel hot spots; each docstring is the hot spot's contract.

Kernels receive tensors and plain arguments (never Keras layers). "compute dtype" is float32 under
--precision=fp32, bfloat16 under bf16 and float16 under fp16; docs/vendor_kernels.md lists the dtype each call
site passes under each precision. A replacement must return the documented shapes and dtypes (checked when the
step is traced) and be differentiable wherever the default is (gradients flow to every float input).
Dropout uses TensorFlow's stateless dropout with the `seed` the call site draws from the model's seeded RNG.
"""
import math

import tensorflow as tf

from tf_gp2bm.kernels import registry
from tf_gp2bm.kernels.registry import HotSpot


def _dropout(x, rate, seed, training):
  if not training or not rate:
    return x
  return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)


def batch_norm(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, training):
  """batch_norm(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon, training)
      -> (y, new_moving_mean, new_moving_variance)

  ResNet's batch norms (every model-garden BatchNormalization). x [N, H, W, C] channels-last in the compute dtype;
  gamma, beta, moving_mean, moving_variance [C] float32 tensors; momentum, epsilon Python floats (0.9, 1e-5);
  training a Python bool. Training: y = gamma * (x - mean) / sqrt(var + epsilon) + beta with the batch mean and
  the biased batch variance over N, H, W, and new_moving = moving - (moving - batch) * (1 - momentum), where the
  batch variance averaged in is the unbiased one (x N*H*W / (N*H*W - 1)), as Keras does. Inference: y uses the moving statistics, which come back unchanged. y has x's
  dtype, the statistics float32. The call site assigns the new moving statistics; ReLU follows as its own op.
  """
  if not training:
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, moving_mean, moving_variance, epsilon=epsilon,
                                               is_training=False)
    return y, moving_mean, moving_variance
  # The fused op normalizes with the biased batch variance and returns the Bessel-corrected one, which is what
  # Keras (and so the reference) averages into the moving variance.
  y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)
  decay = tf.convert_to_tensor(1.0 - momentum, tf.float32)
  return y, moving_mean - (moving_mean - mean) * decay, moving_variance - (moving_variance - variance) * decay


def layer_norm(x, gamma, beta, epsilon):
  """layer_norm(x, gamma, beta, epsilon) -> y

  BERT's embedding layer norm and the MLM-transform layer norm (the encoder's two per layer go through
  residual_dropout_layer_norm, whose default calls this). x [..., hidden] in float32 (encoder) or the compute dtype
  (MLM head); gamma, beta [hidden] float32; epsilon a Python float (1e-12). Normalizes over the last axis with the
  biased variance, computing in float32: y = gamma * (x - mean) / sqrt(var + epsilon) + beta, returned in x's dtype.
  """
  dtype = x.dtype
  x = tf.cast(x, tf.float32)
  mean, variance = tf.nn.moments(x, [-1], keepdims=True)
  y = tf.nn.batch_normalization(x, mean, variance, offset=beta, scale=gamma, variance_epsilon=epsilon)
  return tf.cast(y, dtype)


def gelu(x):
  """gelu(x) -> y

  The MLM-transform activation (after its dense layer's bias). Any float dtype; y has x's shape and dtype. The tanh
  approximation the BERT reference computes: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))).
  """
  return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


def bias_gelu(x, bias):
  """bias_gelu(x, bias) -> y

  BERT's feed-forward intermediate activation, fused with the intermediate dense layer's bias: y = gelu(x + bias)
  with gelu's tanh formula. x [batch, seq, intermediate] (the matmul output without its bias), bias [intermediate],
  both float32 under fp32 and bf16 (the garden computes this activation in float32 under bf16) and float16 under
  fp16; y has x's shape and dtype.
  """
  return registry.get("gelu")(x + bias)


def attention_core(query, key, value, mask, dropout_rate, seed, training):
  """attention_core(query, key, value, mask, dropout_rate, seed, training) -> context

  Scaled dot-product attention after the input projections. query [batch, seq_q, heads, head_dim], key and value
  [batch, seq_k, heads, head_dim] in the compute dtype; mask None or a full float mask [batch, seq_q, seq_k] in the
  compute dtype, 1 = attend, 0 = not (key padding, or block-diagonal for packed sequences); dropout_rate a Python
  float; seed None or an int32 [2] tensor for the stateless dropout; training a Python bool. Scores
  q k^T / sqrt(head_dim) are computed in the compute dtype; masked positions get -1e9 added (the dtype's lowest
  value for float16) before the softmax; dropout at `dropout_rate` on the probabilities when training.
  Returns context [batch, seq_q, heads, head_dim] in the compute dtype.
  """
  query = query * tf.cast(1.0 / math.sqrt(float(query.shape[-1])), query.dtype)
  scores = tf.einsum("bkhd,bqhd->bhqk", key, query)
  if mask is not None:
    lowest = scores.dtype.min if scores.dtype == tf.float16 else -1e9
    scores += (1.0 - tf.cast(mask[:, None, :, :], scores.dtype)) * tf.cast(lowest, scores.dtype)
  probs = _dropout(tf.nn.softmax(scores, axis=-1), dropout_rate, seed, training)
  return tf.einsum("bhqk,bkhd->bqhd", probs, value)


def self_attention(x, qkv_kernel, qkv_bias, output_kernel, output_bias, mask, num_heads, dropout_rate, seed,
                   training):
  """self_attention(x, qkv_kernel, qkv_bias, output_kernel, output_bias, mask, num_heads, dropout_rate, seed,
                    training) -> y

  BERT's whole multi-head self-attention layer with packed QKV weights. x [batch, seq, hidden] in the compute
  dtype; qkv_kernel [hidden, 3 * hidden] (columns: query, key, value, each head-major [heads, head_dim]) and
  qkv_bias [3 * hidden] in the compute dtype; output_kernel [hidden, hidden] (rows head-major) and output_bias
  [hidden]; mask, dropout_rate, seed and training as in attention_core (the attention-probability dropout);
  num_heads a Python int. y = context @ output_kernel + output_bias, [batch, seq, hidden] in the compute dtype,
  where context is attention_core over the projections x @ qkv_kernel + qkv_bias split into query, key and value.
  The residual, its dropout and the layer norm that follow are residual_dropout_layer_norm.
  """
  batch, seq = tf.shape(x)[0], tf.shape(x)[1]
  hidden = x.shape[-1]
  qkv = tf.einsum("bsh,hk->bsk", x, qkv_kernel) + qkv_bias
  qkv = tf.reshape(qkv, [batch, seq, 3, num_heads, hidden // num_heads])
  query, key, value = tf.unstack(qkv, 3, axis=2)
  context = registry.get("attention_core")(query, key, value, mask, dropout_rate, seed, training)
  return tf.einsum("bsh,hk->bsk", tf.reshape(context, [batch, seq, hidden]), output_kernel) + output_bias


def residual_dropout_layer_norm(x, residual, gamma, beta, epsilon, dropout_rate, seed, training):
  """residual_dropout_layer_norm(x, residual, gamma, beta, epsilon, dropout_rate, seed, training) -> y

  The two post-norm sub-layer ends of every BERT encoder layer: y = layer_norm(dropout(x) + residual). After
  attention x and residual are [batch, seq, hidden] in the compute dtype; after the feed-forward output both are
  float32. gamma, beta [hidden] float32; epsilon a Python float (1e-12); dropout (hidden_dropout_prob) as in
  attention_core. The sum is formed in x's dtype, the layer norm computed in float32; y is float32.
  """
  return registry.get("layer_norm")(tf.cast(_dropout(x, dropout_rate, seed, training) + residual, tf.float32),
                                    gamma, beta, epsilon)


def mlm_softmax_cross_entropy(logits, labels, weights):
  """mlm_softmax_cross_entropy(logits, labels, weights) -> (loss, correct, count)

  BERT's masked-LM loss and accuracy. logits [n, vocab] in any float dtype, labels [n] int32, weights [n] float
  (0 for padding predictions). Computed in float32: loss = sum(w * nll) / (sum(w) + 1e-5) as the reference;
  correct = sum(w * (argmax(logits) == label)); count = sum(w); three float32 scalars.
  """
  logits = tf.cast(logits, tf.float32)
  weights = tf.cast(weights, tf.float32)
  nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  loss = tf.reduce_sum(weights * nll) / (tf.reduce_sum(weights) + 1e-5)
  correct = tf.reduce_sum(weights * tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels),
                                            tf.float32))
  return loss, correct, tf.reduce_sum(weights)


def lars_update(var, grad, momentum_slot, lr, momentum, weight_decay, eeta, epsilon, adapt):
  """lars_update(var, grad, momentum_slot, lr, momentum, weight_decay, eeta, epsilon, adapt) -> None

  One variable's LARS update (the default lars_apply calls it per variable). var and momentum_slot float32
  tf.Variables, grad a float32 tensor of var's shape; lr a float32 scalar tensor; momentum, weight_decay, eeta,
  epsilon Python floats; adapt a Python bool (False for batch-norm and bias variables: plain momentum SGD).
  With adapt: trust = eeta |w| / (|g| + wd |w| + epsilon) when |w| > 0 and |g| > 0, else 1; g <- g + wd w.
  Then m <- momentum m - lr trust g; w <- w + m. Assigns var and momentum_slot; all math in float32.
  """
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


def lars_apply(variables, grads, momentum_slots, lr, momentum, weight_decay, eeta, epsilon, adapt):
  """lars_apply(variables, grads, momentum_slots, lr, momentum, weight_decay, eeta, epsilon, adapt) -> None

  The whole LARS step over every trainable variable at once (the multi-tensor cut point). variables,
  momentum_slots: lists of float32 tf.Variables; grads: list of float32 tensors (same order and shapes); adapt:
  list of Python bools; lr a float32 scalar tensor; the rest Python floats. Per variable exactly lars_update;
  the per-variable norms may be computed together, the results must be those of lars_update.
  """
  update = registry.get("lars_update")
  for v, g, m, a in zip(variables, grads, momentum_slots, adapt):
    update(v, g, m, lr, momentum, weight_decay, eeta, epsilon, a)


def lamb_update(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt):
  """lamb_update(var, grad, m_slot, v_slot, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt) -> None

  One variable's LAMB update (the default lamb_apply calls it per variable). var, m_slot, v_slot float32
  tf.Variables; grad float32 of var's shape; lr a float32 scalar tensor; step the 1-based update number as a
  float32 scalar tensor (bias correction); beta_1, beta_2, epsilon, weight_decay Python floats; adapt a Python bool
  (False for LayerNorm and bias variables: no weight decay, trust ratio 1).
  m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2; u = (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps),
  with adapt u += wd w and trust = |w| / |u| when both norms are > 0, else 1; w <- w - lr trust u.
  Assigns var, m_slot and v_slot; all math in float32.
  """
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


def lamb_apply(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt):
  """lamb_apply(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt)
      -> None

  The whole LAMB step over every trainable variable at once (the multi-tensor cut point). Lists as in lars_apply
  (variables, m_slots, v_slots float32 tf.Variables; grads float32 tensors; adapt Python bools); the scalars as in
  lamb_update. Per variable exactly lamb_update.
  """
  update = registry.get("lamb_update")
  for w, g, m, v, a in zip(variables, grads, m_slots, v_slots, adapt):
    update(w, g, m, v, lr, step, beta_1, beta_2, epsilon, weight_decay, a)


def _like(t, dtype=None):
  return tf.TensorSpec(t.shape, dtype or t.dtype)


HOT_SPOTS = (
    HotSpot("batch_norm", batch_norm,
            lambda x, gamma, moving_mean, moving_variance, **_: (_like(x), _like(moving_mean),
                                                                 _like(moving_variance))),
    HotSpot("layer_norm", layer_norm, lambda x, **_: _like(x)),
    HotSpot("gelu", gelu, lambda x: _like(x)),
    HotSpot("bias_gelu", bias_gelu, lambda x, **_: _like(x)),
    HotSpot("attention_core", attention_core, lambda query, value, **_: tf.TensorSpec(
        query.shape[:-1].concatenate(value.shape[-1:]), query.dtype)),
    HotSpot("self_attention", self_attention, lambda x, **_: _like(x)),
    HotSpot("residual_dropout_layer_norm", residual_dropout_layer_norm, lambda x, **_: _like(x, tf.float32)),
    HotSpot("mlm_softmax_cross_entropy", mlm_softmax_cross_entropy,
            lambda **_: (tf.TensorSpec([], tf.float32),) * 3),
    HotSpot("lars_update", lars_update, optimizer=True),
    HotSpot("lars_apply", lars_apply, optimizer=True),
    HotSpot("lamb_update", lamb_update, optimizer=True),
    HotSpot("lamb_apply", lamb_apply, optimizer=True),
)
