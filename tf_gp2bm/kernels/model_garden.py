"""Model-garden layers whose forward goes through the kernel hot spots (the one place with private tf_keras imports).

The garden builds its layers from `tf_keras.layers.BatchNormalization`, `LayerNormalization`, `MultiHeadAttention`
and `official.nlp.modeling.layers.TransformerEncoderBlock`, looked up when a model is constructed. `swappable(...)`
replaces those names while a model is built with subclasses that read their variables and call
`kernels.get(NAME)` with tensors, so the garden's models, variable names and checkpoints stay as they are and a
vendor kernel lands in the compiled step. Configurations the tasks never use fall back to the garden's own code.

Dropout (the hot spots' and the garden's Dropout layers) is TensorFlow's stateless dropout with seeds drawn from
one tf.random.Generator per model build, seeded from Python's RNG (which tf_keras.utils.set_random_seed seeds):
unlike Keras' legacy stateful random ops, that stream is the same on every run under XLA.
"""
import contextlib
import random

import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers as nlp_layers
from official.nlp.modeling.layers.transformer_encoder_block import TransformerEncoderBlock
from tf_keras.src import backend
from tf_keras.src.engine import base_layer_utils
from tf_keras.src.layers.attention.multi_head_attention import MultiHeadAttention
from tf_keras.src.layers.normalization.batch_normalization import BatchNormalization
from tf_keras.src.layers.regularization.dropout import Dropout
from tf_keras.src.layers.normalization.layer_normalization import LayerNormalization
from tf_keras.src.layers.pooling.max_pooling2d import MaxPooling2D
from tf_keras.src.mixed_precision import autocast_variable

from tf_gp2bm import kernels
from tf_gp2bm.kernels import determinism

_streams = []  # the seed stream of the model being built (innermost swappable block last)


def gelu(x):
  """The BERT activation; a block built with it routes its bias + activation through `bias_gelu`."""
  return kernels.get("gelu")(x)  # looked up while tracing, so a vendor kernel lands in the compiled step


def _own_dtype(*variables):
  """Variable values in their own dtype (float32), not cast to the layer's compute dtype."""
  with autocast_variable.enable_auto_cast_variables(None):
    return [tf.convert_to_tensor(v) for v in variables]


def _static_training(training):
  """The call's training mode as a Python bool (Keras' learning phase when the caller gave none), or None while
  Keras traces a functional model symbolically (the garden's own code runs then; the train step never does)."""
  if training is None:
    training = base_layer_utils.call_context().training
  if training is None:
    training = backend.learning_phase()
  value = tf.get_static_value(training)
  return None if value is None else bool(value)


def _built(layer, example):
  """Builds a garden sub-layer by calling it once (its variables get the garden's names) before reading them."""
  if not layer.built:
    layer(example)
  return layer


class SeedStream:
  """Draws int32 [2] seeds for stateless dropout. Held by layers as a plain object, so Keras does not count its
  generator's state among the model's variables (checkpoints and the trainer's state stay as they were)."""

  def __init__(self):
    self.generator = tf.random.Generator.from_seed(random.getrandbits(62))

  def seed(self, rate, training):
    """None when no dropout happens (not training or rate 0), else a fresh seed."""
    if not training or not rate:
      return None
    return self.generator.uniform_full_int([2], tf.int32)


def _seed_stream():
  if not _streams:
    _streams.append(SeedStream())
  return _streams[-1]


class SwappableDropout(Dropout):
  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._seeds = _seed_stream()

  def call(self, inputs, training=None):
    training = _static_training(training)
    if training is None or self.noise_shape is not None:
      return super().call(inputs, training=training)
    seed = self._seeds.seed(self.rate, training)
    return inputs if seed is None else tf.nn.experimental.stateless_dropout(inputs, self.rate, seed)


class SwappableBatchNormalization(BatchNormalization):
  def call(self, inputs, training=None, mask=None):
    if (inputs.shape.rank != 4 or self.axis != [3] or self.renorm or self.virtual_batch_size
        or self.adjustment or mask is not None):
      return super().call(inputs, training=training, mask=mask)
    training = _static_training(self._get_training_value(training))
    if training is None:
      return super().call(inputs, training=training, mask=mask)
    inputs = tf.cast(inputs, self.compute_dtype)
    channels = inputs.shape[-1]
    gamma, beta, mean, variance = _own_dtype(
        self.gamma if self.scale else tf.ones([channels]), self.beta if self.center else tf.zeros([channels]),
        self.moving_mean, self.moving_variance)
    y, new_mean, new_variance = kernels.get("batch_norm")(inputs, gamma, beta, mean, variance, self.momentum,
                                                          self.epsilon, training)
    if training:
      self.moving_mean.assign(new_mean)
      self.moving_variance.assign(new_variance)
    return y


class SwappableLayerNormalization(LayerNormalization):
  def call(self, inputs):
    inputs = tf.cast(inputs, self.compute_dtype)
    if self.axis != [inputs.shape.rank - 1] or not (self.center and self.scale):
      return super().call(inputs)
    gamma, beta = _own_dtype(self.gamma, self.beta)
    return kernels.get("layer_norm")(inputs, gamma, beta, self.epsilon)


class SwappableMultiHeadAttention(MultiHeadAttention):
  """Self-attention goes through `self_attention` (packed QKV); other uses through `attention_core`."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._seeds = _seed_stream()

  def call(self, query, value, key=None, attention_mask=None, return_attention_scores=False, training=None,
           use_causal_mask=False):
    if not self._built_from_signature:
      self._build_from_signature(query=query, value=value, key=key)
    plain = (query is value and (key is None or key is value) and not return_attention_scores
             and not use_causal_mask and self._output_shape is None and self._use_bias
             and tuple(self._attention_axes) == (1,) and query.shape.rank == 3)
    if plain:
      training = _static_training(training)
    if not plain or training is None:
      return super().call(query, value, key, attention_mask, return_attention_scores, training, use_causal_mask)
    mask = self._compute_attention_mask(query, value, key=key, attention_mask=attention_mask)
    if mask is not None:
      mask = tf.cast(mask, self.compute_dtype)
    hidden = query.shape[-1]
    q, k, v = (_built(d, query) for d in (self._query_dense, self._key_dense, self._value_dense))
    out = _built(self._output_dense, v(query))
    qkv_kernel = tf.concat([tf.reshape(d.kernel, [hidden, -1]) for d in (q, k, v)], axis=1)
    qkv_bias = tf.concat([tf.reshape(d.bias, [-1]) for d in (q, k, v)], axis=0)
    output_kernel = tf.reshape(out.kernel, [-1, out.kernel.shape[-1]])
    seed = self._seeds.seed(self._dropout, training)
    return kernels.get("self_attention")(query, qkv_kernel, qkv_bias, output_kernel, out.bias, mask,
                                         self._num_heads, self._dropout, seed, training)

  def _compute_attention(self, query, key, value, attention_mask=None, training=None):
    training = _static_training(training)
    if training is None:
      return super()._compute_attention(query, key, value, attention_mask, training)
    if attention_mask is not None:
      attention_mask = tf.cast(attention_mask, query.dtype)
    seed = self._seeds.seed(self._dropout, training)
    return kernels.get("attention_core")(query, key, value, attention_mask, self._dropout, seed, training), None


class SwappableTransformerEncoderBlock(TransformerEncoderBlock):
  """BERT's post-norm encoder layer: self_attention, residual_dropout_layer_norm, bias_gelu, the output dense,
  residual_dropout_layer_norm."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._seeds = _seed_stream()

  def _plain(self, inputs, output_range):
    return (isinstance(inputs, (list, tuple)) and len(inputs) == 2 and not output_range and not self._output_range
            and not self._norm_first and self._use_query_residual and self._linformer_dim is None
            and not self._return_attention_scores and not self._use_rms_norm and self._inner_activation is gelu
            and self._src_block_size is None and self._num_kv_heads is None and inputs[0].shape.rank == 3)

  def call(self, inputs, output_range=None):
    training = _static_training(None)
    if training is None or not self._plain(inputs, output_range):
      return super().call(inputs, output_range)
    x, mask = inputs
    residual_ln = kernels.get("residual_dropout_layer_norm")
    attention = self._attention_layer(query=x, value=x, key=x, attention_mask=mask)
    norm = _built(self._attention_layer_norm, attention)
    gamma, beta = _own_dtype(norm.gamma, norm.beta)
    rate = self._output_dropout_rate
    attention = residual_ln(attention, tf.cast(x, attention.dtype), gamma, beta, norm.epsilon, rate,
                            self._seeds.seed(rate, training), training)

    dense = self._intermediate_dense
    act_dtype = self._intermediate_activation_layer.compute_dtype  # float32 under bf16, as the garden
    inner = tf.cast(attention, self.compute_dtype)
    inner = tf.einsum(dense.equation, inner, _built(dense, inner).kernel)
    (bias,) = _own_dtype(dense.bias)
    inner = kernels.get("bias_gelu")(tf.cast(inner, act_dtype), tf.cast(bias, act_dtype))
    inner = self._inner_dropout_layer(inner)
    output = tf.cast(self._output_dense(inner), tf.float32)

    norm = _built(self._output_layer_norm, output)
    gamma, beta = _own_dtype(norm.gamma, norm.beta)
    return residual_ln(output, attention, gamma, beta, norm.epsilon, rate,
                       self._seeds.seed(rate, training), training)


class DeterministicMaxPooling2D(MaxPooling2D):
  """Max pooling as the maximum of the window's strided slices. Same values; its gradient (slices and elementwise
  maxima, first maximum on ties) compiles deterministically under XLA, whose MaxPoolGrad refuses op determinism.
  Used only under --deterministic."""

  def call(self, inputs):
    shape = inputs.shape.as_list()
    if self.data_format != "channels_last" or None in shape[1:3]:
      return super().call(inputs)
    pads, sizes = [], []
    for size, k, s in zip(shape[1:3], self.pool_size, self.strides):
      out = -(-size // s) if self.padding == "same" else (size - k) // s + 1
      total = max((out - 1) * s + k - size, 0) if self.padding == "same" else 0
      pads.append([total // 2, total - total // 2])
      sizes.append(out)
    x = tf.pad(inputs, [[0, 0], *pads, [0, 0]], constant_values=inputs.dtype.min)
    result = None
    for i in range(self.pool_size[0]):
      for j in range(self.pool_size[1]):
        window = x[:, i:i + (sizes[0] - 1) * self.strides[0] + 1:self.strides[0],
                   j:j + (sizes[1] - 1) * self.strides[1] + 1:self.strides[1], :]
        result = window if result is None else tf.maximum(result, window)
    return result


_SWAPS = {"BatchNormalization": (tf_keras.layers, SwappableBatchNormalization),
          "Dropout": (tf_keras.layers, SwappableDropout),
          "LayerNormalization": (tf_keras.layers, SwappableLayerNormalization),
          "MultiHeadAttention": (tf_keras.layers, SwappableMultiHeadAttention),
          "TransformerEncoderBlock": (nlp_layers, SwappableTransformerEncoderBlock),
          "MaxPool2D": (tf_keras.layers, DeterministicMaxPooling2D),  # under --deterministic only
          "MaxPooling2D": (tf_keras.layers, DeterministicMaxPooling2D)}


@contextlib.contextmanager
def swappable(*names):
  """Within the block, the named garden layers (keys of _SWAPS) build their swappable subclasses."""
  unknown = sorted(set(names) - set(_SWAPS))
  if unknown:
    raise KeyError(f"no swappable layer {unknown}; known: {sorted(_SWAPS)}")
  if determinism.enabled():
    names = names + ("MaxPool2D", "MaxPooling2D")
  saved = {n: getattr(_SWAPS[n][0], n) for n in names}
  for n in names:
    setattr(_SWAPS[n][0], n, _SWAPS[n][1])
  _streams.append(SeedStream())
  try:
    yield
  finally:
    _streams.pop()
    for n, cls in saved.items():
      setattr(_SWAPS[n][0], n, cls)
