"""Synthetic BERT pretraining records whose sequence lengths follow the real training set's aggregates.

    python -m data_prep.wikipedia.length_model --out=DIR [--sequences=313000] [--files=1] [--seed=0]

The MLPerf training set (156,726,829 sequences, 4.04e10 padding tokens: about 254 real tokens of 512 on average)
cannot be shipped with tests. The reference create_pretraining_data.py fills most sequences to max_seq_length
from long articles, draws a random target length for short_seq_prob = 10 % of them, and ends others early at
article ends. The model mixes the same three parts: a share at the full 512, a uniform 10 % short tail, and a
triangular density falling from short to long (article ends). Its mean is about 254 tokens, and its packing
bound at 3 sequences per row is about 2.0, as the real set's (NVIDIA's strategy tool reports 2.012).
Token ids and masks are random; only the lengths and the record layout matter to what uses it (packing tests, the
pack stage's figures). Nothing it writes is committed.
"""
import argparse
import os
import sys

import numpy as np

FULL_SHARE = 0.19     # sequences at exactly max_seq_length
SHORT_SHARE = 0.10    # the reference's short_seq_prob: a target length uniform in [MIN_LENGTH, max]
MIN_LENGTH = 8        # [CLS] a [SEP] b [SEP] with a few tokens each
TAIL_START = 20       # the article-end part: triangular density falling from here to max - 1
MASKED_LM_PROB = 0.15


def lengths(count, rng, max_seq_length=512):
  """`count` sequence lengths (int64) drawn from the model."""
  part = rng.random(count)
  short = rng.integers(MIN_LENGTH, max_seq_length, count)
  tail = TAIL_START + ((max_seq_length - 1 - TAIL_START) * (1 - np.sqrt(rng.random(count)))).astype(np.int64)
  return np.where(part < FULL_SHARE, max_seq_length,
                  np.where(part < FULL_SHARE + SHORT_SHARE, short, tail)).astype(np.int64)


def instances(sequence_lengths, rng, max_predictions_per_seq=76, vocab_size=30522):
  """Unpadded instances (data_prep.bert_records.serialize_instance's dict form) of the given lengths, masked as the
  reference masks: min(max_predictions, max(1, round(0.15 x length))) positions, never [CLS] or [SEP]."""
  for n in sequence_lengths:
    n = int(n)
    ids = rng.integers(1000, vocab_size, n)
    split = max(2, min(n - 2, int(rng.integers(2, n - 1)) if n > 4 else 2))
    ids[0], ids[split - 1], ids[n - 1] = 101, 102, 102
    segments = np.zeros(n, np.int64)
    segments[split:] = 1
    candidates = np.setdiff1d(np.arange(1, n - 1), [split - 1])
    count = min(max_predictions_per_seq, max(1, round(MASKED_LM_PROB * n)), candidates.size)
    positions = np.sort(rng.choice(candidates, count, replace=False))
    yield {"input_ids": ids, "segment_ids": segments, "masked_lm_positions": positions,
           "masked_lm_ids": rng.integers(1000, vocab_size, count), "next_sentence_labels": int(rng.integers(0, 2))}


def write_set(out_dir, sequences, files=1, seed=0, max_seq_length=512, max_predictions_per_seq=76):
  """Writes `files` record files part-00000.. holding `sequences` in all; returns their paths."""
  from data_prep.bert_records import write_examples
  rng = np.random.default_rng(seed)
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for i, share in enumerate(np.array_split(np.arange(sequences), files)):
    path = os.path.join(out_dir, f"part-{i:05d}")
    write_examples(path, instances(lengths(share.size, rng, max_seq_length), rng, max_predictions_per_seq),
                   max_seq_length, max_predictions_per_seq)
    paths.append(path)
  return paths


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", required=True, help="folder for the record files")
  p.add_argument("--sequences", type=int, default=313_000, help="sequences in all (a real part holds about 313,000)")
  p.add_argument("--files", type=int, default=1)
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  if a.sequences < 1 or a.files < 1 or a.files > a.sequences:
    p.error(f"--sequences={a.sequences} --files={a.files}: expected 1 <= files <= sequences")
  paths = write_set(a.out, a.sequences, a.files, a.seed)
  print(f"wrote {a.sequences:,} sequences in {len(paths)} file(s) under {a.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
