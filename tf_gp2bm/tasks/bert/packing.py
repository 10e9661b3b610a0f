"""BERT sequence packing: several pretraining sequences share one max_seq_length row, each attending only to itself.

MLPerf allows packing when every sequence is still seen exactly once in random order. A packed row holds up to
`max_sequences` sequences back to back; per token it carries the sequence's own position id (restarting at 0)
and segment id, and `sequence_ids` (1..k, 0 = padding), from which the model builds a block-diagonal attention
mask. Each sequence keeps its next-sentence label (`cls_positions` says where its [CLS] token sits) and all of its
masked-LM predictions (positions shifted to the row). With that, the masked-LM loss (summed over predictions,
divided by their count) and the next-sentence loss (mean over sequences) of a batch of rows are those of the same
sequences unpacked.

The packing itself (pack_histogram, assign_rows) and the row layout are plain Python/NumPy so that data_prep can
write packed records; the TensorFlow helpers import TensorFlow when called. Training reads the rows as NVIDIA's
accepted packed BERT does: a step is a fixed number of rows from one shuffled stream of all rows (train_dataset),
and the trainer counts the sequences they hold (tasks/bert/task.py).
"""
import numpy as np

from tf_gp2bm.formats.bert_pretraining import PACK_FORMAT as FORMAT, PACK_MANIFEST as MANIFEST

MAX_SEQUENCES = 3  # per row: enough for the short-sequence tail of the Wikipedia data (see docs/performance.md)
FEATURES = ("input_ids", "segment_ids", "position_ids", "sequence_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels", "next_sentence_weights", "cls_positions")


def predictions_per_row(max_predictions_per_seq, max_sequences=MAX_SEQUENCES):
  """Masked-LM slots per row. The reference masks min(max_predictions, max(1, round(0.15 x length))) per sequence,
  so k sequences of total length <= max_seq_length hold at most that many; one extra slot per sequence covers the
  rounding up of each."""
  return max_predictions_per_seq + max_sequences


def pack_histogram(lengths, capacity, max_sequences=MAX_SEQUENCES):
  """Row patterns for a multiset of sequence lengths: [(lengths of one row, how many such rows)], every length
  placed exactly once, at most max_sequences sequences and `capacity` tokens per row.

  Row by row, on the length histogram: a row starts with the longest sequence left, and the other max_sequences-1
  places take the lengths that fill the rest best (for 3 per row: the pair of largest sum that fits, exactly
  searched; ties to the larger partner, keeping the shortest sequences as fillers for later rows). Identical rows
  are made in one step, as many as the histogram allows, so the work is O(capacity^2) whatever the number of
  sequences, and memory is the histogram. Filling each row with up to two partners keeps the short tail spread
  over the long rows; best-fit by single sequences leaves it to form rows of three short sequences."""
  lengths = np.asarray(lengths, np.int64)
  if lengths.size and (lengths.min() < 1 or lengths.max() > capacity):
    raise ValueError(f"sequence lengths must be in 1..{capacity}, got {lengths.min()}..{lengths.max()}")
  if not 1 <= max_sequences <= 3:
    raise ValueError(f"max_sequences={max_sequences}: 1, 2 or 3 sequences per row")
  left = np.bincount(lengths, minlength=capacity + 1)
  left[0] = 0
  patterns = {}
  while True:
    present = np.flatnonzero(left)
    if not present.size:
      break
    first = int(present[-1])
    left[first] -= 1  # the row's first sequence, taken out while its partners are searched
    partners = _best_partners(left, capacity - first, max_sequences - 1)
    left[first] += 1
    pattern = (first,) + partners
    need = np.bincount(pattern, minlength=capacity + 1)
    used = np.flatnonzero(need)
    rows = int(min(left[used] // need[used]))
    left[used] -= need[used] * rows
    patterns[pattern] = patterns.get(pattern, 0) + rows
  return sorted(patterns.items(), key=lambda item: (-len(item[0]), item[0]))


def _best_partners(left, room, places):
  """Up to `places` (0..2) lengths from the histogram `left` of largest sum <= room, as a tuple longest first."""
  if places == 0 or room <= 0:
    return ()
  # largest[x]: the longest length still there that is <= x (0: none)
  have = np.where(left[:room + 1] > 0, np.arange(room + 1), 0)
  largest = np.maximum.accumulate(have)
  if places == 1 or not largest[room]:
    return (int(largest[room]),) if largest[room] else ()
  seconds = np.flatnonzero(left[1:room + 1]) + 1  # every candidate for the longer partner
  # the shorter partner: the longest <= min(second, room - second), not the same sequence unless two are left
  cap = np.minimum(seconds, room - seconds)
  third = np.where(cap > 0, largest[np.maximum(cap, 0)], 0)
  same = (third == seconds) & (left[seconds] < 2)
  third = np.where(same, largest[np.maximum(third - 1, 0)], third)
  total = seconds + third
  # ties: two partners rather than one (the short tail is used up), then the longer partner
  best = np.lexsort((seconds, third > 0, total))[-1]
  return tuple(int(x) for x in (seconds[best], third[best]) if x)


def assign_rows(lengths, patterns, rng, max_sequences=MAX_SEQUENCES):
  """[rows, max_sequences] indices into `lengths` (-1: no sequence), the rows in an order drawn from `rng`: the
  patterns are laid out and shuffled, and the sequences of each length are dealt to them in a shuffled order (as
  NVIDIA's packed-data tool assigns its strategies)."""
  lengths = np.asarray(lengths, np.int64)
  rows = sum(count for _, count in patterns)
  slot_lengths = np.zeros((rows, max_sequences), np.int64)  # 0: empty slot
  r = 0
  for pattern, count in patterns:
    slot_lengths[r:r + count, :len(pattern)] = pattern
    r += count
  slot_lengths = slot_lengths[rng.permutation(rows)]
  table = np.full((rows, max_sequences), -1, np.int64)
  if np.count_nonzero(slot_lengths) != lengths.size:
    raise ValueError(f"the patterns hold {np.count_nonzero(slot_lengths)} sequences, the input has {lengths.size}")
  for length in np.unique(lengths):
    slots = slot_lengths == length
    pool = np.flatnonzero(lengths == length)
    if slots.sum() != pool.size:
      raise ValueError(f"the patterns hold {slots.sum()} sequences of {length} tokens, the input has {pool.size}")
    table[slots] = rng.permutation(pool)
  return table


def pack_stats(lengths, rows, capacity, max_sequences=MAX_SEQUENCES):
  """The figures NVIDIA's strategy tool prints, for `rows` packed rows of `lengths`: packing factor (sequences per
  row), the lower bound on rows max(ceil(tokens / capacity), ceil(sequences / max_sequences)) and the factor it
  allows, and the padding share of the packed and of the unpacked rows."""
  lengths = np.asarray(lengths, np.int64)
  sequences, tokens = int(lengths.size), int(lengths.sum())
  bound = max(-(-tokens // capacity), -(-sequences // max_sequences))
  return {"sequences": sequences, "tokens": tokens, "rows": int(rows), "bound_rows": bound,
          "packing_factor": sequences / rows, "bound_factor": sequences / bound,
          "rows_over_bound": rows / bound - 1.0, "padding_share": 1.0 - tokens / (rows * capacity),
          "unpacked_padding_share": 1.0 - tokens / (sequences * capacity)}


def sequence_length(example):
  return int(np.count_nonzero(example["input_mask"]))


def pack_row(examples, max_seq_length, max_predictions_per_row, max_sequences=MAX_SEQUENCES):
  """One packed row (dict of int64/float32 NumPy arrays, FEATURES) from unpacked examples (dicts of the
  bert_pretraining features)."""
  row = {name: np.zeros(max_seq_length, np.int64) for name in FEATURES[:4]}
  row.update(masked_lm_positions=np.zeros(max_predictions_per_row, np.int64),
             masked_lm_ids=np.zeros(max_predictions_per_row, np.int64),
             masked_lm_weights=np.zeros(max_predictions_per_row, np.float32),
             next_sentence_labels=np.zeros(max_sequences, np.int64),
             next_sentence_weights=np.zeros(max_sequences, np.float32),
             cls_positions=np.zeros(max_sequences, np.int64))
  if not 1 <= len(examples) <= max_sequences:
    raise ValueError(f"a row holds 1..{max_sequences} sequences, got {len(examples)}")
  offset = predicted = 0
  for k, example in enumerate(examples):
    n = sequence_length(example)
    if offset + n > max_seq_length:
      raise ValueError(f"sequences of {offset + n} tokens do not fit a row of {max_seq_length}")
    span = slice(offset, offset + n)
    row["input_ids"][span] = example["input_ids"][:n]
    row["segment_ids"][span] = example["segment_ids"][:n]
    row["position_ids"][span] = np.arange(n)
    row["sequence_ids"][span] = k + 1
    real = np.asarray(example["masked_lm_weights"]) > 0
    count = int(real.sum())
    if predicted + count > max_predictions_per_row:
      raise ValueError(f"{predicted + count} masked positions do not fit the row's {max_predictions_per_row}")
    slots = slice(predicted, predicted + count)
    row["masked_lm_positions"][slots] = np.asarray(example["masked_lm_positions"])[real] + offset
    row["masked_lm_ids"][slots] = np.asarray(example["masked_lm_ids"])[real]
    row["masked_lm_weights"][slots] = 1.0
    row["next_sentence_labels"][k] = int(np.asarray(example["next_sentence_labels"]).reshape(-1)[0])
    row["next_sentence_weights"][k] = 1.0
    row["cls_positions"][k] = offset
    offset, predicted = offset + n, predicted + count
  return row


def pack(examples, max_seq_length, max_predictions_per_seq, rng, max_sequences=MAX_SEQUENCES):
  """Unpacked examples (dicts of the bert_pretraining features) -> packed rows, each example in exactly one row,
  the rows in an order drawn from `rng` (in memory: for small sets and tests; the pack stage streams)."""
  lengths = [sequence_length(e) for e in examples]
  table = assign_rows(lengths, pack_histogram(lengths, max_seq_length, max_sequences), rng, max_sequences)
  slots = predictions_per_row(max_predictions_per_seq, max_sequences)
  return [pack_row([examples[i] for i in members if i >= 0], max_seq_length, slots, max_sequences)
          for members in table]


# --- TensorFlow side --------------------------------------------------------------------------------------------
def feature_spec(max_seq_length, max_predictions_per_seq, max_sequences=MAX_SEQUENCES):
  import tensorflow as tf
  ints = lambda n: tf.io.FixedLenFeature([n], tf.int64)  # noqa: E731
  slots = predictions_per_row(max_predictions_per_seq, max_sequences)
  spec = {name: ints(max_seq_length) for name in FEATURES[:4]}
  spec.update(masked_lm_positions=ints(slots), masked_lm_ids=ints(slots),
              masked_lm_weights=tf.io.FixedLenFeature([slots], tf.float32),
              next_sentence_labels=ints(max_sequences),
              next_sentence_weights=tf.io.FixedLenFeature([max_sequences], tf.float32),
              cls_positions=ints(max_sequences))
  return spec


def to_model_inputs(features):
  """Parsed packed features -> the model's packed inputs (int32 ids, float weights)."""
  import tensorflow as tf
  f = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in features.items()}
  return {"input_word_ids": f["input_ids"], "input_type_ids": f["segment_ids"], "position_ids": f["position_ids"],
          "sequence_ids": f["sequence_ids"], "masked_lm_positions": f["masked_lm_positions"],
          "masked_lm_ids": f["masked_lm_ids"], "masked_lm_weights": f["masked_lm_weights"],
          "next_sentence_labels": f["next_sentence_labels"], "next_sentence_weights": f["next_sentence_weights"],
          "cls_positions": f["cls_positions"]}


def attention_mask(sequence_ids, dtype):
  """[batch, seq, seq] float mask, 1 where query and key belong to the same sequence (block-diagonal)."""
  import tensorflow as tf
  same = tf.equal(sequence_ids[:, :, None], sequence_ids[:, None, :]) & (sequence_ids[:, None, :] > 0)
  return tf.cast(same, dtype)


def next_sentence_loss(nsp_logits, labels, weights=None):
  """Mean next-sentence cross-entropy over sequences: the reference's mean over the batch when unpacked
  (weights None), and over the real sequences of packed rows (weights 1/0)."""
  import tensorflow as tf
  log_probs = tf.nn.log_softmax(tf.reshape(tf.cast(nsp_logits, tf.float32), [-1, 2]), axis=-1)
  nll = -tf.reduce_sum(tf.one_hot(tf.reshape(labels, [-1]), 2, dtype=tf.float32) * log_probs, axis=-1)
  if weights is None:
    return tf.reduce_mean(nll)
  weights = tf.reshape(tf.cast(weights, tf.float32), [-1])
  return tf.reduce_sum(weights * nll) / tf.reduce_sum(weights)


def train_dataset(files, input_context, rows, max_seq_length, max_predictions_per_seq, seed,
                  max_sequences=MAX_SEQUENCES, cycle_length=8, shuffle_buffer=1000):
  """Batches of `rows` packed rows for one replica, from ONE stream of all packed rows.

  Every replica builds the same stream (the same seed everywhere): the file list shuffled, min(cycle_length, files)
  files interleaved in a fixed order, a shuffle buffer, repeated with a new order each pass; replica i takes rows
  i, i + n, i + 2n, ... of it. So each pass trains every row, hence every sequence, exactly once over the
  replicas, in an order drawn from the seed, and the per-replica batches keep static shapes. Each replica reads
  every file's bytes and parses only its own rows."""
  import tensorflow as tf
  n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
  spec = feature_spec(max_seq_length, max_predictions_per_seq, max_sequences)
  ds = tf.data.Dataset.from_tensor_slices(list(files)).shuffle(len(files), seed=seed)
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.shuffle(shuffle_buffer, seed=seed).repeat()
  ds = ds.shard(n, i).batch(rows, drop_remainder=True)
  ds = ds.map(lambda r: to_model_inputs(tf.io.parse_example(r, spec)), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def synthetic_batch(rows, max_seq_length, max_predictions_per_seq, vocab_size, packing_factor,
                    max_sequences=MAX_SEQUENCES):
  """Random packed rows holding packing_factor sequences per row on average (equal lengths within a row), for
  timing the packed step."""
  import tensorflow as tf
  per_row = np.full(rows, int(packing_factor), np.int64)
  per_row[:int(round(packing_factor * rows)) - int(per_row.sum())] += 1
  per_row = np.clip(per_row, 1, max_sequences)
  slots = predictions_per_row(max_predictions_per_seq, max_sequences)
  seq_ids = np.zeros([rows, max_seq_length], np.int64)
  positions = np.zeros_like(seq_ids)
  cls = np.zeros([rows, max_sequences], np.int64)
  nsp_w = np.zeros([rows, max_sequences], np.float32)
  for r, k in enumerate(per_row):
    length = max_seq_length // k
    for j in range(k):
      seq_ids[r, j * length:(j + 1) * length] = j + 1
      positions[r, j * length:(j + 1) * length] = np.arange(length)
      cls[r, j], nsp_w[r, j] = j * length, 1.0
  rng = np.random.default_rng(0)
  ints = lambda shape, hi: tf.constant(rng.integers(0, hi, shape), tf.int32)  # noqa: E731
  return {"input_word_ids": ints([rows, max_seq_length], vocab_size), "input_type_ids": ints([rows, max_seq_length], 2),
          "position_ids": tf.constant(positions, tf.int32), "sequence_ids": tf.constant(seq_ids, tf.int32),
          "masked_lm_positions": ints([rows, slots], max_seq_length), "masked_lm_ids": ints([rows, slots], vocab_size),
          "masked_lm_weights": tf.ones([rows, slots]), "next_sentence_labels": ints([rows, max_sequences], 2),
          "next_sentence_weights": tf.constant(nsp_w), "cls_positions": tf.constant(cls, tf.int32)}
