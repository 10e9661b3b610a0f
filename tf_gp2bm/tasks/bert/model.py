"""BERT pretraining model from the TF model garden: BertEncoderV2 + masked-LM head (tied to the word embeddings)
+ next-sentence head on the pooled [CLS] output, as the reference modeling.py / run_pretraining.py.

Layout (reference TF1 name -> our variable, see tf_gp2bm.tasks.bert.checkpoint):
  bert/embeddings/*, bert/encoder/layer_N/*, bert/pooler/dense/*  -> BertEncoderV2 (pooler = `pooler_transform`)
  cls/predictions/*                                               -> model-garden MaskedLM (`bert/cls/predictions`)
  cls/seq_relationship/output_weights|output_bias                 -> Dense `next_sentence` on the pooled output
The encoder's pooler feeds the NSP head, so every variable gets a gradient (model garden's BertPretrainerV2 with a
ClassificationHead would add a second, unused pooler).
"""
import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers, networks

from tf_gp2bm.tasks.bert import packing
from tf_gp2bm.tasks.bert.sizes import LARGE, TINY, BertConfig, load_config  # noqa: F401  (the sizes' users)
from tf_gp2bm.kernels.model_garden import gelu, swappable


_gelu = gelu  # the gelu hot spot; encoder blocks built with it fuse bias + activation into bias_gelu


class BertPretrainingModel(tf_keras.Model):
  """inputs: dict(input_word_ids, input_mask, input_type_ids [b, seq] int32, masked_lm_positions [b, m] int32).
  outputs: dict(mlm_logits [b, m, vocab], nsp_logits [b, 2]).

  Packed rows (tf_gp2bm.tasks.bert.packing) carry position_ids and sequence_ids [b, seq] instead of input_mask, and
  cls_positions [b, k]: the same layers then attend within each sequence and nsp_logits is [b, k, 2]."""

  def __init__(self, config: BertConfig, **kwargs):
    super().__init__(name="bert_pretraining", **kwargs)
    self.config = config
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range)  # noqa: E731
    self.encoder = networks.BertEncoderV2(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, inner_dim=config.intermediate_size,
        max_sequence_length=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
        inner_activation=_gelu, output_dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob, initializer=init(), name="bert_encoder")
    dummy = dummy_inputs(1, min(config.max_position_embeddings, 8), 1)
    self.encoder({k: v for k, v in dummy.items() if k != "masked_lm_positions"})  # creates the embedding table
    self.masked_lm = layers.MaskedLM(embedding_table=self.encoder.get_embedding_table(), activation=_gelu,
                                     initializer=init(), output="logits", name="cls/predictions")
    self.next_sentence = tf_keras.layers.Dense(2, kernel_initializer=init(), name="next_sentence")

  def call(self, inputs, training=None):
    if "sequence_ids" in inputs:
      return self._packed(inputs, training)
    outputs = self.encoder({"input_word_ids": inputs["input_word_ids"], "input_mask": inputs["input_mask"],
                            "input_type_ids": inputs["input_type_ids"]}, training=training)
    mlm_logits = self.masked_lm(outputs["sequence_output"], masked_positions=inputs["masked_lm_positions"])
    nsp_logits = self.next_sentence(outputs["pooled_output"])
    return {"mlm_logits": mlm_logits, "nsp_logits": nsp_logits}

  def _packed(self, inputs, training):
    """The encoder's own layers on packed rows: each token's position embedding is that of its position within
    its sequence, attention is block-diagonal over sequences, and the pooler reads each sequence's [CLS]."""
    enc = self.encoder
    ids = inputs["input_word_ids"]
    # Slice first, as the garden's PositionEmbedding does: the table then gets a dense gradient, as unpacked.
    table = enc._position_embedding_layer._position_embeddings[:tf.shape(ids)[1]]
    positions = tf.gather(table, inputs["position_ids"])
    x = enc._embedding_layer(ids) + tf.cast(positions, enc._embedding_layer.compute_dtype) \
        + enc._type_embedding_layer(inputs["input_type_ids"])
    x = enc._embedding_dropout(enc._embedding_norm_layer(x), training=training)
    mask = packing.attention_mask(inputs["sequence_ids"], x.dtype)
    for layer in enc._transformer_layers:
      x = layer([x, mask], training=training)
    pooled = enc._pooler_layer(tf.gather(x, inputs["cls_positions"], batch_dims=1))
    return {"mlm_logits": self.masked_lm(x, masked_positions=inputs["masked_lm_positions"]),
            "nsp_logits": self.next_sentence(pooled)}


def dummy_inputs(batch, seq_length, predictions):
  z = tf.zeros([batch, seq_length], tf.int32)
  return {"input_word_ids": z, "input_mask": tf.ones_like(z), "input_type_ids": z,
          "masked_lm_positions": tf.zeros([batch, predictions], tf.int32)}


def build_bert(config: BertConfig, seq_length=None, predictions=20):
  """A built BertPretrainingModel (variables created by one call on dummy inputs).

  Built with the garden's encoder layers, attention and layer norms routed through the kernel hot spots
  (tf_gp2bm.kernels.model_garden); names, variables and default numerics are the garden's.
  """
  with swappable("LayerNormalization", "MultiHeadAttention", "TransformerEncoderBlock", "Dropout"):
    model = BertPretrainingModel(config)
    model(dummy_inputs(1, seq_length or min(config.max_position_embeddings, 16), predictions), training=False)
  return model
