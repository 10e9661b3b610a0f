"""Model-garden layers routed through the kernel hot spots (tf_gp2bm.kernels).

The model garden builds its layers from `tf_keras.layers.BatchNormalization`, `LayerNormalization` and
`MultiHeadAttention`, looked up when a model is constructed and built. `swappable(...)` replaces those names for
the duration of a model build with subclasses whose forward calls `kernels.get(...)`, so the garden's models stay
as they are and a vendor kernel still lands in the compiled step. Variables, names and defaults are unchanged.
"""
import contextlib

import tf_keras
from tf_keras.src.layers.attention.multi_head_attention import MultiHeadAttention
from tf_keras.src.layers.normalization.batch_normalization import BatchNormalization
from tf_keras.src.layers.normalization.layer_normalization import LayerNormalization

from tf_gp2bm import kernels


class SwappableBatchNormalization(BatchNormalization):
  def call(self, inputs, training=None):
    return kernels.get("batch_norm")(self, inputs, training)


class SwappableLayerNormalization(LayerNormalization):
  def call(self, inputs):
    return kernels.get("layer_norm")(self, inputs)


class SwappableMultiHeadAttention(MultiHeadAttention):
  def _compute_attention(self, query, key, value, attention_mask=None, training=None):
    return kernels.get("attention_core")(self, query, key, value, attention_mask, training), None


_SWAPS = {"BatchNormalization": SwappableBatchNormalization,
          "LayerNormalization": SwappableLayerNormalization,
          "MultiHeadAttention": SwappableMultiHeadAttention}


@contextlib.contextmanager
def swappable(*names):
  """Within the block, tf_keras.layers.NAME builds the swappable subclass (names from _SWAPS)."""
  saved = {n: getattr(tf_keras.layers, n) for n in names}
  for n in names:
    setattr(tf_keras.layers, n, _SWAPS[n])
  try:
    yield
  finally:
    for n, cls in saved.items():
      setattr(tf_keras.layers, n, cls)
