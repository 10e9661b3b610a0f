"""The `pack` stage: BERT pretraining records -> packed rows of max_seq_length holding several sequences each.

    python -m data_prep.wikipedia pack --input=TFRECORDS --out=DIR [--seed=N] [--workers=N]

Each input file is packed on its own into an output file of the same name: the rows come from the file's length
histogram (tf_gp2bm.tasks.bert.packing.pack_histogram, within about 1 % of the lower bound on rows on the real
length distribution), the sequences of each length are dealt to them and the rows written in an order drawn from
--seed and the file name, so a rerun with the same seed writes the same bytes. A file is held in compact columns
(int16 token ids, int8 segments: about 1 KB per sequence) and the rows are built and written one at a time, so a
real part of about 313,000 sequences packs in a few hundred MB. Before a file is marked done, its rows are unpacked
again and checked to hold every input sequence exactly once (tokens, segments, masked positions and ids,
next-sentence label); otherwise nothing is written. Resumable through done markers like the other stages.

Each file's line and the closing line print what NVIDIA's strategy tool prints: the packing factor (sequences per
row), the lower bound on rows max(ceil(tokens / max_seq_length), ceil(sequences / max_sequences)) and the factor
it allows, and the padding share before and after. manifest-pack.json (tf_gp2bm.formats.bert_pretraining reads
it) lists per file its rows (`count`), `bytes`, `sha256`, `sequences`, `tokens` and `rows_by_sequences`, and the
totals with the packing factor; the trainer checks each file's size against it before the clock starts.
"""
import argparse
import array
import glob
import hashlib
import multiprocessing
import os
import sys
import time
import zlib

import numpy as np

from data_prep import output_lock
from data_prep.bert_records import read_records, write_records
from data_prep.wikipedia.manifest import (StageError, is_done, mark_done, read_marker, remove_stale_temps,
                                          write_manifest)
from data_prep.wikipedia.tfrecords import check_writable, output_name
from tf_gp2bm.files import check_out_apart, readable_files, write_json_atomic
from tf_gp2bm.formats import bert_pretraining
from tf_gp2bm.progress import Progress
from tf_gp2bm.tasks.bert import packing

STAGE = "pack"
_SKIP = (".json", ".txt", ".md5", ".md", ".log")


def list_inputs(spec):
  """FILE, GLOB or FOLDER (its record files, manifests left out) -> sorted paths."""
  if os.path.isdir(spec):
    paths = [os.path.join(spec, n) for n in sorted(os.listdir(spec))
             if not n.startswith(".") and not n.endswith(_SKIP) and ".tmp." not in n]
  else:
    paths = sorted(glob.glob(spec))
  paths = readable_files(paths, "--input")
  if not paths:
    raise StageError(f"--input={spec}: no record files there")
  return paths


def _example(serialized):
  """The features of one record as arrays (_Columns keeps what packing needs of them, compactly)."""
  import tensorflow as tf  # protobuf parsing only
  feature = tf.train.Example.FromString(serialized).features.feature
  out = {}
  for name in bert_pretraining.FEATURES:
    if name not in feature:
      raise ValueError(f"feature {name!r} missing")
    kind = feature[name].WhichOneof("kind")
    out[name] = np.asarray(getattr(feature[name], kind).value,
                           np.float32 if name == "masked_lm_weights" else np.int64)
  return out


def _serialize(row):
  import tensorflow as tf
  feature = {}
  for name in packing.FEATURES:
    values = row[name]
    if values.dtype == np.float32:
      feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
    else:
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def _identity(ids, segments, positions, masked_ids, label):
  """A digest of what a sequence is, independent of where it sits: compared before and after packing."""
  digest = hashlib.sha1()
  for values in (ids, segments, positions, masked_ids, [label]):
    values = np.asarray(values, np.int64)
    digest.update(len(values).to_bytes(4, "little") + values.tobytes())
  return digest.digest()


def _input_identity(e):
  n = packing.sequence_length(e)
  real = e["masked_lm_weights"] > 0
  return _identity(e["input_ids"][:n], e["segment_ids"][:n], e["masked_lm_positions"][real],
                   e["masked_lm_ids"][real], e["next_sentence_labels"][0])


def _row_identities(row):
  out = []
  real = row["masked_lm_weights"] > 0
  for k in np.flatnonzero(row["next_sentence_weights"] > 0):
    tokens = row["sequence_ids"] == k + 1
    start = int(row["cls_positions"][k])
    mine = real & np.isin(row["masked_lm_positions"], np.flatnonzero(tokens))
    out.append(_identity(row["input_ids"][tokens], row["segment_ids"][tokens],
                         row["masked_lm_positions"][mine] - start, row["masked_lm_ids"][mine],
                         row["next_sentence_labels"][k]))
  return out


class _Columns:
  """A file's sequences in compact columns: token ids (int16 when the vocab fits), segments (int8), masked
  positions and ids, labels, with per-sequence offsets."""

  def __init__(self):
    self.ids, self.segments, self.positions, self.masked_ids = (array.array(t) for t in "iiii")
    self.segments = array.array("b")
    self.lengths, self.predictions, self.labels = array.array("i"), array.array("i"), array.array("b")

  def add(self, e):
    n = packing.sequence_length(e)
    real = e["masked_lm_weights"] > 0
    self.ids.extend(e["input_ids"][:n].tolist())
    self.segments.extend(e["segment_ids"][:n].tolist())
    self.positions.extend(e["masked_lm_positions"][real].tolist())
    self.masked_ids.extend(e["masked_lm_ids"][real].tolist())
    self.lengths.append(n)
    self.predictions.append(int(real.sum()))
    self.labels.append(int(e["next_sentence_labels"][0]))

  def freeze(self):
    as_np = lambda a, dtype: np.frombuffer(a, a.typecode == "b" and np.int8 or np.int32).astype(dtype)  # noqa
    small = np.int16 if (not self.ids or max(self.ids) < 2 ** 15) else np.int32
    self.ids, self.segments = as_np(self.ids, small), as_np(self.segments, np.int8)
    self.positions, self.masked_ids = as_np(self.positions, np.int16), as_np(self.masked_ids, small)
    self.lengths, self.predictions = as_np(self.lengths, np.int64), as_np(self.predictions, np.int64)
    self.labels = as_np(self.labels, np.int64)
    self.start = np.concatenate([[0], np.cumsum(self.lengths)])
    self.pred_start = np.concatenate([[0], np.cumsum(self.predictions)])
    return self

  def example(self, i):
    """Sequence i in the bert_pretraining layout cut to its length (what packing.pack_row takes)."""
    span, preds = slice(self.start[i], self.start[i + 1]), slice(self.pred_start[i], self.pred_start[i + 1])
    count = int(self.predictions[i])
    return {"input_ids": self.ids[span].astype(np.int64), "segment_ids": self.segments[span].astype(np.int64),
            "input_mask": np.ones(int(self.lengths[i]), np.int64),
            "masked_lm_positions": self.positions[preds].astype(np.int64),
            "masked_lm_ids": self.masked_ids[preds].astype(np.int64), "masked_lm_weights": np.ones(count, np.float32),
            "next_sentence_labels": self.labels[i:i + 1]}


def _read_columns(path, seq, preds):
  columns, identities = _Columns(), []
  try:
    for serialized in read_records(path):
      e = _example(serialized)
      if (len(e["input_ids"]), len(e["masked_lm_positions"])) != (seq, preds):
        raise StageError(f"{path}: records of {len(e['input_ids'])} tokens / {len(e['masked_lm_positions'])} "
                         f"predictions, the other inputs have {seq} / {preds}")
      columns.add(e)
      identities.append(_input_identity(e))
  except ValueError as e:
    raise StageError(f"{path}: not BERT pretraining records ({e})") from None
  if not identities:
    raise StageError(f"{path}: no records")
  identities.sort()
  return columns.freeze(), identities


def pack_file(job):
  """Worker: one record file -> one packed file and its done marker; returns (name, stats, seconds)."""
  path, out_dir, name, settings = job
  start = time.monotonic()
  seq, preds, k = settings["max_seq_length"], settings["max_predictions_per_seq"], settings["max_sequences"]
  columns, before = _read_columns(path, seq, preds)
  rng = np.random.default_rng([settings["seed"], zlib.crc32(name.encode())])
  table = packing.assign_rows(columns.lengths, packing.pack_histogram(columns.lengths, seq, k), rng, k)
  slots = packing.predictions_per_row(preds, k)
  after = []

  def rows():
    for members in table:
      row = packing.pack_row([columns.example(i) for i in members if i >= 0], seq, slots, k)
      after.extend(_row_identities(row))
      yield _serialize(row)
    after.sort()
    if after != before:  # raised inside the writer: its temporary file is removed, nothing is written
      raise StageError(f"{path}: packed rows do not hold every sequence exactly once ({len(after)} unpacked "
                       f"again, {len(before)} read); nothing was written")

  stats = write_records(os.path.join(out_dir, name), rows())
  figures = packing.pack_stats(columns.lengths, len(table), seq, k)
  per_row = (table >= 0).sum(axis=1)
  stats.update(sequences=figures["sequences"], tokens=figures["tokens"],
               rows_by_sequences=[int((per_row == j).sum()) for j in range(1, k + 1)])
  mark_done(out_dir, name, [path], settings, stats)
  return name, figures, time.monotonic() - start


def describe(figures, seq):
  """NVIDIA's strategy tool's figures, on one line."""
  return (f"{figures['sequences']:,} sequences in {figures['rows']:,} rows of {seq} tokens: packing factor "
          f"{figures['packing_factor']:.3f} (bound {figures['bound_factor']:.3f}: {figures['bound_rows']:,} rows, "
          f"{100 * figures['rows_over_bound']:.2f} % over); padding {100 * figures['padding_share']:.2f} % of the "
          f"packed tokens, {100 * figures['unpacked_padding_share']:.2f} % unpacked")


def _record_shape(path):
  for serialized in read_records(path):
    e = _example(serialized)
    return len(e["input_ids"]), len(e["masked_lm_positions"])
  raise StageError(f"{path}: no records")


def run_pack(inputs, out_dir, seed, max_sequences=packing.MAX_SEQUENCES, workers=None):
  names = [output_name(p) for p in inputs]
  clashes = sorted({n for n in names if names.count(n) > 1})
  if clashes:
    raise StageError(f"inputs from different folders would write the same output {clashes[0]!r}")
  check_out_apart(out_dir, [("--input", p) for p in inputs])  # packed files keep their names
  try:
    seq, preds = _record_shape(inputs[0])
  except ValueError as e:
    raise StageError(f"{inputs[0]}: not BERT pretraining records ({e})") from None
  settings = {"format": packing.FORMAT, "seed": seed, "max_sequences": max_sequences, "max_seq_length": seq,
              "max_predictions_per_seq": preds,
              "max_predictions_per_row": packing.predictions_per_row(preds, max_sequences)}
  check_writable(out_dir)
  with output_lock.holding(out_dir, f"python -m data_prep.wikipedia {STAGE}", error=StageError):
    remove_stale_temps(out_dir)
    todo = [(p, out_dir, n, settings) for p, n in zip(inputs, names) if not is_done(out_dir, n, [p], settings)]
    if len(todo) < len(inputs):
      print(f"[{STAGE}] {len(inputs) - len(todo)} of {len(inputs)} files already packed (markers in "
            f"{out_dir}/.done), {len(todo)} to pack", file=sys.stderr)
    progress = Progress(STAGE, total=len(todo), unit="files", every_s=0)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if todo:
      with multiprocessing.get_context("fork").Pool(workers) as pool:
        for name, figures, seconds in pool.imap_unordered(pack_file, todo):
          print(f"[{STAGE}] {name}: {describe(figures, seq)}; {seconds:.1f}s", file=sys.stderr)
          progress.update()
      progress.finish()
    manifest = write_manifest(out_dir, STAGE, settings, names)
    by_k, sequences, tokens = [0] * max_sequences, 0, 0
    for name in names:
      done = read_marker(out_dir, name)
      manifest["files"][name].update(sequences=done["sequences"], tokens=done["tokens"],
                                     rows_by_sequences=done["rows_by_sequences"])
      by_k = [a + b for a, b in zip(by_k, done["rows_by_sequences"])]
      sequences, tokens = sequences + done["sequences"], tokens + done["tokens"]
    rows = manifest["total"]["count"]
    bound = max(-(-tokens // seq), -(-sequences // max_sequences))
    manifest["total"].update(sequences=sequences, tokens=tokens, rows=rows, rows_by_sequences=by_k,
                             packing_factor=round(sequences / rows, 4), bound_rows=bound,
                             bound_factor=round(sequences / bound, 4),
                             padding_share=round(1 - tokens / (rows * seq), 6),
                             unpacked_padding_share=round(1 - tokens / (sequences * seq), 6))
    manifest["format"] = packing.FORMAT
    write_json_atomic(os.path.join(out_dir, packing.MANIFEST), manifest)
    return manifest


def add_parser(sub):
  p = sub.add_parser(STAGE, help="pretraining records -> packed rows (several sequences per row)", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--input", required=True, help="record FILE, GLOB or FOLDER (the tfrecords stage's output)")
  p.add_argument("--out", required=True, help="folder for the packed files and manifest-pack.json")
  p.add_argument("--seed", type=int, default=12345,
                 help="row order (the same seed writes the same files; default: %(default)s)")
  p.add_argument("--max_sequences", type=int, default=packing.MAX_SEQUENCES,
                 help="sequences per row at most, 1 to 3 (default: %(default)s)")
  p.add_argument("--workers", type=int, default=None, help="processes, one input file each (default: one per core)")
  p.set_defaults(func=cmd_pack)


def cmd_pack(args):
  if not 1 <= args.max_sequences <= 3:
    raise StageError(f"--max_sequences={args.max_sequences}: expected 1, 2 or 3")
  if os.path.isdir(args.input):
    check_out_apart(args.out, [("--input", args.input)])  # nor inside the input folder
  manifest = run_pack(list_inputs(args.input), args.out, args.seed, args.max_sequences, args.workers)
  total = manifest["total"]
  figures = dict(total, rows_over_bound=total["rows"] / total["bound_rows"] - 1)
  print(f"[{STAGE}] {describe(figures, manifest['settings']['max_seq_length'])}; wrote "
        f"{os.path.join(args.out, packing.MANIFEST)}")
