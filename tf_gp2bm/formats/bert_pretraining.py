"""The BERT pretraining TFRecord format that `--task=bert` reads (the reference create_pretraining_data.py's).

Written by data_prep (the Wikipedia pipeline and the demo data) through data_prep.bert_records. Padding as the
reference: ids, mask and segment ids padded with 0 to max_seq_length; masked LM positions/ids padded with 0 and
weights 1.0 for real predictions, 0.0 for padding, to max_predictions_per_seq.
"""
FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels")
FORMAT = "tf_gp2bm.bert_pretraining/1"


def feature_spec(max_seq_length, max_predictions_per_seq):
  """Spec for tf.io.parse_single_example / parse_example."""
  import tensorflow as tf  # not at the top: data_prep workers import this module and never need TensorFlow
  ints = lambda n: tf.io.FixedLenFeature([n], tf.int64)
  return {
      "input_ids": ints(max_seq_length),
      "input_mask": ints(max_seq_length),
      "segment_ids": ints(max_seq_length),
      "masked_lm_positions": ints(max_predictions_per_seq),
      "masked_lm_ids": ints(max_predictions_per_seq),
      "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
      "next_sentence_labels": ints(1),
  }
