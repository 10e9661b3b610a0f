"""tf.data over BERT pretraining TFRecords (data_prep.bert_records format), as the reference input_fn_builder.

Train: this rank's file shard (files[rank::ranks]), shuffled file list, parallel interleave, shuffle buffer 1000,
repeat. Eval: the eval set read in order, example i on rank i % ranks, padded with weight-0 examples to the same
number of batches on every rank, so that each example is evaluated exactly once per evaluation.
"""
import glob
import math
import os
import time

import numpy as np
import tensorflow as tf

from tf_gp2bm.errors import InputError

SHUFFLE_BUFFER = 1000
CYCLE_LENGTH = 4
_SKIP_SUFFIXES = (".json", ".txt", ".md5", ".md", ".log", ".py")


def list_files(path, flag):
  """Record files named by a directory (every plain file but manifests), a glob or one file."""
  if not path:
    raise InputError(f"--{flag} is required: BERT pretraining TFRecords written by data_prep")
  if any(c in path for c in "*?["):
    files = sorted(glob.glob(path))
  elif os.path.isdir(path):
    files = sorted(os.path.join(path, n) for n in os.listdir(path)
                   if not n.startswith(".") and not n.endswith(_SKIP_SUFFIXES)
                   and os.path.isfile(os.path.join(path, n)))
  elif os.path.isfile(path):
    files = [path]
  else:
    raise InputError(f"--{flag}={path}: no such file or directory")
  if not files:
    raise InputError(f"--{flag}={path}: no record files found")
  return files


def _feature_lengths(serialized):
  example = tf.train.Example.FromString(serialized)
  out = {}
  for name, feature in example.features.feature.items():
    kind = feature.WhichOneof("kind")
    out[name] = len(getattr(feature, kind).value) if kind else 0
  return out


def check_record_layout(path, serialized, max_seq_length, max_predictions_per_seq, flag):
  """Raises InputError unless the record has every feature with the configured lengths."""
  from tf_gp2bm.formats import bert_pretraining as bert_records
  try:
    lengths = _feature_lengths(serialized)
  except Exception as e:  # noqa: BLE001  (protobuf decode error)
    raise InputError(f"--{flag}: {path}: not a tf.train.Example record ({e})") from None
  want = {n: max_seq_length for n in ("input_ids", "input_mask", "segment_ids")}
  want.update({n: max_predictions_per_seq for n in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")})
  want["next_sentence_labels"] = 1
  missing = [n for n in bert_records.FEATURES if n not in lengths]
  if missing:
    raise InputError(f"--{flag}: {path}: records lack feature(s) {', '.join(missing)}; expected BERT pretraining "
                     "records (data_prep.bert_records)")
  for name, n in want.items():
    if lengths[name] != n:
      what = "--max_seq_length" if n == max_seq_length and name in ("input_ids", "input_mask", "segment_ids") \
          else ("--max_predictions_per_seq" if name != "next_sentence_labels" else "1")
      raise InputError(f"--{flag}: {path}: {name} has {lengths[name]} values, expected {n} ({what}); the records "
                       f"were written for another sequence length / prediction count")


def max_token_id(serialized):
  example = tf.train.Example.FromString(serialized)
  ids = [v for name in ("input_ids", "masked_lm_ids") for v in example.features.feature[name].int64_list.value]
  return max(ids) if ids else 0


def first_record(path):
  for record in tf.data.TFRecordDataset(path).take(1):
    return record.numpy()
  return None


def scan_eval_set(files, max_seq_length, max_predictions_per_seq, vocab_size, flag="eval_dir"):
  """(examples, total masked_lm_weights) of the eval set; checks every record's layout and token ids."""
  from tf_gp2bm.formats import bert_pretraining as bert_records
  count, weight, max_id = 0, 0.0, 0
  checked = False
  spec = bert_records.feature_spec(max_seq_length, max_predictions_per_seq)
  for path in files:
    first = first_record(path)
    if first is None:
      continue
    check_record_layout(path, first, max_seq_length, max_predictions_per_seq, flag)
    checked = True
    ds = tf.data.TFRecordDataset(path).batch(1024).map(lambda r: tf.io.parse_example(r, spec))
    try:
      for batch in ds:
        count += int(batch["input_ids"].shape[0])
        weight += float(np.sum(batch["masked_lm_weights"].numpy(), dtype=np.float64))
        max_id = max(max_id, int(np.max(batch["input_ids"].numpy())), int(np.max(batch["masked_lm_ids"].numpy())))
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
      raise InputError(f"--{flag}: {path}: unreadable or inconsistent records ({e.message.splitlines()[0]})") \
          from None
  if not checked:
    raise InputError(f"--{flag}: every eval file is empty")
  if max_id >= vocab_size:
    raise InputError(f"--{flag}: token id {max_id} in the eval set is outside the model vocab of {vocab_size} "
                     "(records made with another vocab.txt?)")
  return count, weight


def _to_model_inputs(features):
  f = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in features.items()}
  return {"input_word_ids": f["input_ids"], "input_mask": f["input_mask"], "input_type_ids": f["segment_ids"],
          "masked_lm_positions": f["masked_lm_positions"], "masked_lm_ids": f["masked_lm_ids"],
          "masked_lm_weights": f["masked_lm_weights"], "next_sentence_labels": f["next_sentence_labels"][..., 0]}


def train_dataset(files, input_context, batch_size, max_seq_length, max_predictions_per_seq, seed):
  from tf_gp2bm.formats import bert_pretraining as bert_records
  n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
  mine = files[i::n]
  if not mine:
    raise InputError(f"--data_dir: {len(files)} training files cannot be split over {n} ranks (need >= {n})")
  spec = bert_records.feature_spec(max_seq_length, max_predictions_per_seq)
  ds = tf.data.Dataset.from_tensor_slices(mine).shuffle(len(mine), seed=seed).repeat()
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(mine)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed)
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
  from tf_gp2bm.formats import bert_pretraining as bert_records
  n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
  spec = bert_records.feature_spec(max_seq_length, max_predictions_per_seq)
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
  from tf_gp2bm.formats import bert_pretraining as bert_records
  spec = bert_records.feature_spec(max_seq_length, max_predictions_per_seq)
  mine = files[input_context.input_pipeline_id::input_context.num_input_pipelines]
  ds = tf.data.Dataset.from_tensor_slices(mine).shuffle(len(mine)).repeat()
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(mine)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  ds = ds.shuffle(SHUFFLE_BUFFER)
  ds = ds.map(lambda r: _to_model_inputs(tf.io.parse_single_example(r, spec)), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def samples_per_second(dataset, batches, batch_size):
  it = iter(dataset)
  next(it)  # fill buffers first
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - t0)
