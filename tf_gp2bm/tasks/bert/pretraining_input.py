"""tf.data over BERT pretraining TFRecords (tf_gp2bm.formats.bert_pretraining), as the reference input_fn_builder.

The file lists come from the records' manifests (the task reads no record before the clock starts).
Train: this rank's file shard (files[rank::ranks]), shuffled file list, parallel interleave of min(8, files) files,
shuffle buffer 1000, then repeat (each record once per pass, as the reference). Eval: the eval set read in order,
example i on rank i % ranks, padded with weight-0 examples to the same number of batches on every rank, so that
each example is evaluated exactly once per evaluation.
"""
import math
import time

import tensorflow as tf

from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import bert_pretraining

SHUFFLE_BUFFER = 1000
CYCLE_LENGTH = 8  # the reference reads min(num_cpu_threads=8, files) files at once


def _to_model_inputs(features):
  f = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in features.items()}
  return {"input_word_ids": f["input_ids"], "input_mask": f["input_mask"], "input_type_ids": f["segment_ids"],
          "masked_lm_positions": f["masked_lm_positions"], "masked_lm_ids": f["masked_lm_ids"],
          "masked_lm_weights": f["masked_lm_weights"], "next_sentence_labels": f["next_sentence_labels"][..., 0]}


def train_dataset(files, input_context, batch_size, max_seq_length, max_predictions_per_seq, seed):
  n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
  mine = files[i::n]
  if not mine:
    raise InputError(f"--data_dir: {len(files)} training files cannot be split over {n} ranks (need >= {n})")
  spec = bert_pretraining.feature_spec(max_seq_length, max_predictions_per_seq)
  ds = tf.data.Dataset.from_tensor_slices(mine).shuffle(len(mine), seed=seed)
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(files)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed).repeat()
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.map(lambda r: _to_model_inputs(tf.io.parse_example(r, spec)), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches_per_replica(num_examples, num_pipelines, batch_size):
  """Same on every rank: ceil(largest per-rank share / batch)."""
  return math.ceil(math.ceil(num_examples / num_pipelines) / batch_size)


def padding_example(max_seq_length, max_predictions_per_seq):
  z = lambda n: tf.zeros([n], tf.int64)  # noqa: E731
  return {"input_ids": z(max_seq_length), "input_mask": z(max_seq_length), "segment_ids": z(max_seq_length),
          "masked_lm_positions": z(max_predictions_per_seq), "masked_lm_ids": z(max_predictions_per_seq),
          "masked_lm_weights": tf.zeros([max_predictions_per_seq], tf.float32),
          "next_sentence_labels": tf.zeros([1], tf.int64)}


def eval_dataset(files, num_examples, input_context, batch_size, max_seq_length, max_predictions_per_seq):
  n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
  spec = bert_pretraining.feature_spec(max_seq_length, max_predictions_per_seq)
  mine = len(range(i, num_examples, n))
  num_batches = eval_batches_per_replica(num_examples, n, batch_size)
  ds = tf.data.TFRecordDataset(files).shard(n, i)
  ds = ds.map(lambda r: tf.io.parse_single_example(r, spec), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  pad = padding_example(max_seq_length, max_predictions_per_seq)
  ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat(num_batches * batch_size - mine))
  ds = ds.batch(batch_size, drop_remainder=True).map(_to_model_inputs)
  return ds.prefetch(tf.data.AUTOTUNE)


def reference_style_train_dataset(files, input_context, batch_size, max_seq_length, max_predictions_per_seq):
  """The reference input_fn_builder's order of work (parse each record, then batch), for the pipeline bench."""
  spec = bert_pretraining.feature_spec(max_seq_length, max_predictions_per_seq)
  mine = files[input_context.input_pipeline_id::input_context.num_input_pipelines]
  ds = tf.data.Dataset.from_tensor_slices(mine).shuffle(len(mine))
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(files)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  ds = ds.shuffle(SHUFFLE_BUFFER).repeat()
  ds = ds.map(lambda r: _to_model_inputs(tf.io.parse_single_example(r, spec)), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def samples_per_second(dataset, batches, batch_size):
  it = iter(dataset)
  next(it)  # fill buffers first
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - t0)
