"""The `pack` stage: BERT pretraining records -> packed rows of max_seq_length holding several sequences each.

    python -m data_prep.wikipedia pack --input=TFRECORDS --out=DIR [--seed=N] [--workers=N]

Each input file is packed on its own (first-fit-decreasing, tf_gp2bm.tasks.bert.packing) into an output file of
the same name; the rows are written in an order drawn from --seed and the file name, so a rerun with the same seed
writes the same bytes. Before a file is marked done, its rows are unpacked again and checked to hold every input
sequence exactly once (tokens, segments, masked positions and ids, next-sentence label). Resumable through done
markers like the other stages; manifest-pack.json lists per file the rows (`count`), `sequences` and
`rows_by_sequences` (rows holding 1, 2, ... sequences), and the same totals with the packing factor; the trainer
reads the totals to compose batches of a fixed number of sequences (tf_gp2bm.tasks.bert.packing).
"""
import glob
import hashlib
import multiprocessing
import os
import sys
import time
import zlib

import numpy as np

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


def _example(serialized, compact=False):
  """The features of one record as arrays; compact: token features cut to the sequence's length in small dtypes
  (a part of the real data holds a few hundred thousand sequences, all in memory while it is packed)."""
  import tensorflow as tf  # protobuf parsing only
  feature = tf.train.Example.FromString(serialized).features.feature
  out = {}
  for name in bert_pretraining.FEATURES:
    if name not in feature:
      raise ValueError(f"feature {name!r} missing")
    kind = feature[name].WhichOneof("kind")
    out[name] = np.asarray(getattr(feature[name], kind).value,
                           np.float32 if name == "masked_lm_weights" else np.int64)
  if compact:
    n = packing.sequence_length(out)
    out.update(input_ids=out["input_ids"][:n].astype(np.int32), segment_ids=out["segment_ids"][:n].astype(np.int8),
               input_mask=np.ones(n, np.int8))
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


def pack_file(job):
  """Worker: one record file -> one packed file and its done marker; returns (name, rows, sequences, seconds)."""
  path, out_dir, name, settings = job
  start = time.monotonic()
  try:
    examples = [_example(r, compact=True) for r in read_records(path)]
  except ValueError as e:
    raise StageError(f"{path}: not BERT pretraining records ({e})") from None
  if not examples:
    raise StageError(f"{path}: no records")
  seq, preds = _record_shape(path)
  if (seq, preds) != (settings["max_seq_length"], settings["max_predictions_per_seq"]):
    raise StageError(f"{path}: records of {seq} tokens / {preds} predictions, the other inputs have "
                     f"{settings['max_seq_length']} / {settings['max_predictions_per_seq']}")
  rng = np.random.default_rng([settings["seed"], zlib.crc32(name.encode())])
  rows = packing.pack(examples, seq, preds, rng, settings["max_sequences"])
  before = sorted(_input_identity(e) for e in examples)
  after = sorted(i for row in rows for i in _row_identities(row))
  if before != after:
    raise StageError(f"{path}: packed rows do not hold every sequence exactly once ({len(after)} unpacked "
                     f"again, {len(before)} read); nothing was written")
  stats = write_records(os.path.join(out_dir, name), (_serialize(r) for r in rows))
  stats["sequences"] = len(examples)
  per_row = [int(r["next_sentence_weights"].sum()) for r in rows]
  stats["rows_by_sequences"] = [per_row.count(k) for k in range(1, settings["max_sequences"] + 1)]
  mark_done(out_dir, name, [path], settings, stats)
  return name, len(rows), len(examples), time.monotonic() - start


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
  remove_stale_temps(out_dir)
  todo = [(p, out_dir, n, settings) for p, n in zip(inputs, names) if not is_done(out_dir, n, [p], settings)]
  if len(todo) < len(inputs):
    print(f"[{STAGE}] {len(inputs) - len(todo)} of {len(inputs)} files already packed (markers in "
          f"{out_dir}/.done), {len(todo)} to pack", file=sys.stderr)
  progress = Progress(STAGE, total=len(todo), unit="files", every_s=0)
  workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
  if todo:
    with multiprocessing.get_context("fork").Pool(workers) as pool:
      for name, rows, sequences, seconds in pool.imap_unordered(pack_file, todo):
        print(f"[{STAGE}] {name}: {sequences:,} sequences in {rows:,} rows ({sequences / rows:.3f} per row) "
              f"in {seconds:.1f}s", file=sys.stderr)
        progress.update()
    progress.finish()
  sequences = sum(read_marker(out_dir, n)["sequences"] for n in names)
  manifest = write_manifest(out_dir, STAGE, settings, names)
  by_k = [0] * max_sequences
  for name in names:
    done = read_marker(out_dir, name)
    manifest["files"][name].update(sequences=done["sequences"], rows_by_sequences=done["rows_by_sequences"])
    by_k = [a + b for a, b in zip(by_k, done["rows_by_sequences"])]
  rows = manifest["total"]["count"]
  manifest["total"].update(sequences=sequences, rows=rows, packing_factor=round(sequences / rows, 4),
                           rows_by_sequences=by_k)
  manifest["format"] = packing.FORMAT
  write_json_atomic(os.path.join(out_dir, packing.MANIFEST), manifest)
  return manifest


def add_parser(sub):
  p = sub.add_parser(STAGE, help="pretraining records -> packed rows (several sequences per row)")
  p.add_argument("--input", required=True, help="record FILE, GLOB or FOLDER (the tfrecords stage's output)")
  p.add_argument("--out", required=True, help="folder for the packed files and manifest-pack.json")
  p.add_argument("--seed", type=int, default=12345, help="row order (the same seed writes the same files)")
  p.add_argument("--max_sequences", type=int, default=packing.MAX_SEQUENCES, help="sequences per row at most")
  p.add_argument("--workers", type=int, default=None)
  p.set_defaults(func=cmd_pack)


def cmd_pack(args):
  if args.max_sequences < 1:
    raise StageError(f"--max_sequences={args.max_sequences}: expected an integer >= 1")
  if os.path.isdir(args.input):
    check_out_apart(args.out, [("--input", args.input)])  # nor inside the input folder
  manifest = run_pack(list_inputs(args.input), args.out, args.seed, args.max_sequences, args.workers)
  total = manifest["total"]
  print(f"[{STAGE}] {total['sequences']:,} sequences in {total['rows']:,} rows of "
        f"{manifest['settings']['max_seq_length']} tokens: {total['packing_factor']:.3f} sequences per row; "
        f"wrote {os.path.join(args.out, packing.MANIFEST)}")
