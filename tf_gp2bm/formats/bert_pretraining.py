"""The BERT pretraining TFRecord format that `--task=bert` reads (the reference create_pretraining_data.py's).

Written by data_prep (the Wikipedia pipeline and the demo data) through data_prep.bert_records. Padding as the
reference: ids, mask and segment ids padded with 0 to max_seq_length; masked LM positions/ids padded with 0 and
weights 1.0 for real predictions, 0.0 for padding, to max_predictions_per_seq.

manifest.json beside the records vouches for their content, so a task reads it instead of the records before the
clock starts. Written by data_prep after reading every record (conversion and `verify`):
  format, max_seq_length, max_predictions_per_seq, vocab_size (what max_token_id was checked against),
  files: {name: {split ("train" | "eval"), records, bytes, sha256, max_token_id, masked_lm_weight_sum}},
  splits: {split: {files, records, max_token_id, masked_lm_weight_sum}}, tool.
One folder may hold both splits (the published TFRecords do); a file of no records is never listed as valid.
"""
import dataclasses
import fnmatch
import os

from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import check_listed_file, load_manifest

MANIFEST = "manifest.json"
SPLITS = ("train", "eval")
FILE_FIELDS = ("split", "records", "bytes", "sha256", "max_token_id", "masked_lm_weight_sum")

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


@dataclasses.dataclass(frozen=True)
class RecordFile:
  path: str
  records: int
  bytes: int
  sha256: str
  max_token_id: int
  masked_lm_weight_sum: float


@dataclasses.dataclass(frozen=True)
class RecordSet:
  """One split of a manifest: its files (sorted by name) and their totals."""
  manifest: str
  split: str
  files: tuple
  records: int
  max_token_id: int
  masked_lm_weight_sum: float

  @property
  def paths(self):
    return [f.path for f in self.files]


@dataclasses.dataclass(frozen=True)
class Manifest:
  path: str
  max_seq_length: int
  max_predictions_per_seq: int
  vocab_size: int
  splits: dict  # split -> RecordSet, only the splits the folder holds

  def split(self, name, flag=None):
    """The RecordSet of `name`; InputError naming the manifest (and the flag) when the folder has none."""
    if name not in self.splits:
      where = f"--{flag}: " if flag else ""
      raise InputError(f"{where}{self.path} lists no {name} records (it has: {', '.join(self.splits) or 'none'})")
    return self.splits[name]

  def check_model(self, max_seq_length, max_predictions_per_seq, vocab_size):
    """The records fit a model of these sizes (InputError naming the manifest otherwise)."""
    if (self.max_seq_length, self.max_predictions_per_seq) != (max_seq_length, max_predictions_per_seq):
      raise InputError(f"{self.path}: records of max_seq_length={self.max_seq_length}, max_predictions_per_seq="
                       f"{self.max_predictions_per_seq}; the run expects {max_seq_length} and "
                       f"{max_predictions_per_seq}")
    for records in self.splits.values():
      if records.max_token_id >= vocab_size:
        worst = max(records.files, key=lambda f: f.max_token_id)
        raise InputError(f"{worst.path}: token id {worst.max_token_id} is outside the model vocab of {vocab_size} "
                         f"(records made with another vocab.txt? {self.path})")


def read_manifest(directory):
  """The manifest of a folder of BERT pretraining records, checked by metadata only: format, fields, every listed
  file present with its recorded size, no empty file, totals that add up, token ids inside the vocab it was
  checked against. `directory` may also be one record file or a glob of them (its folder's manifest, only the
  files it names). Raises InputError naming the manifest or the file at fault."""
  only = None
  if os.path.isfile(directory) or any(c in os.path.basename(directory) for c in "*?["):
    directory, only = os.path.split(os.path.abspath(directory))
  path = os.path.join(directory, MANIFEST)
  raw = load_manifest(path, FORMAT, "BERT records are described by `python -m data_prep.wikipedia` (tfrecords, "
                      "eval, published or verify --vocab=...) or `python -m data_prep.demo.bert`")
  try:
    return _parse(path, directory, raw, only)
  except InputError:
    raise
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    raise InputError(f"{path}: malformed manifest ({type(e).__name__}: {e}); rewrite it with "
                     "`python -m data_prep.wikipedia verify --out=... --vocab=...`") from None


def _parse(path, directory, raw, only):
  vocab_size = int(raw["vocab_size"])
  by_split = {}
  for name, entry in sorted(raw["files"].items()):
    if only is not None and not fnmatch.fnmatchcase(name, only):
      continue
    missing = [k for k in FILE_FIELDS if k not in entry]
    if missing:
      raise InputError(f"{path}: entry {name!r} lacks {', '.join(missing)}")
    split = entry["split"]
    if split not in SPLITS:
      raise InputError(f"{path}: entry {name!r} has split {split!r}, expected one of {', '.join(SPLITS)}")
    record_file = RecordFile(os.path.join(directory, name), int(entry["records"]), int(entry["bytes"]),
                             str(entry["sha256"]), int(entry["max_token_id"]), float(entry["masked_lm_weight_sum"]))
    check_listed_file(record_file.path, path, f"{record_file.records:,} records")
    size = os.path.getsize(record_file.path)
    if size != record_file.bytes:
      raise InputError(f"{record_file.path}: {size:,} bytes, {path} records {record_file.bytes:,} (a cut or "
                       "changed copy); copy it again or re-run `python -m data_prep.wikipedia verify`")
    if record_file.records <= 0:
      raise InputError(f"{record_file.path}: holds no records ({path}); remove it or regenerate its part")
    if record_file.max_token_id >= vocab_size:
      raise InputError(f"{record_file.path}: token id {record_file.max_token_id} is outside the vocab of "
                       f"{vocab_size} it was checked against ({path})")
    by_split.setdefault(split, []).append(record_file)
  if only is not None and not by_split:
    raise InputError(f"{os.path.join(directory, only)}: no file of {path} matches")
  splits = {}
  for split, listed in by_split.items():
    totals = raw["splits"][split]
    records_set = RecordSet(path, split, tuple(listed), sum(f.records for f in listed),
                            max(f.max_token_id for f in listed), sum(f.masked_lm_weight_sum for f in listed))
    if only is None and (int(totals["records"]) != records_set.records or int(totals["files"]) != len(listed)):
      raise InputError(f"{path}: splits.{split} says {totals['records']} records in {totals['files']} files, "
                       f"its files add up to {records_set.records} in {len(listed)}")
    splits[split] = records_set
  if not splits:
    raise InputError(f"{path}: lists no record files")
  return Manifest(path, int(raw["max_seq_length"]), int(raw["max_predictions_per_seq"]), vocab_size, splits)


# --- packed rows (`python -m data_prep.wikipedia pack`) ---------------------------------------------------------
# manifest-pack.json, written after every file's rows were unpacked again and compared with its input:
#   format, settings {format, seed, max_sequences, max_seq_length, max_predictions_per_seq, ...},
#   files: {name: {count (rows), bytes, sha256, sequences, tokens, rows_by_sequences}},
#   total: {files, count, rows, sequences, tokens, rows_by_sequences, packing_factor, bound_rows, bound_factor,
#           padding_share, unpacked_padding_share}.
PACK_MANIFEST = "manifest-pack.json"
PACK_FORMAT = "tf_gp2bm.bert_packed/2"
PACK_FILE_FIELDS = ("count", "bytes", "sequences", "rows_by_sequences")


@dataclasses.dataclass(frozen=True)
class PackedSet:
  manifest: str
  paths: tuple
  rows: int
  sequences: int
  max_sequences: int
  max_seq_length: int
  max_predictions_per_seq: int
  rows_by_sequences: tuple

  @property
  def packing_factor(self):
    """Sequences per row over the whole set."""
    return self.sequences / self.rows


def read_pack_manifest(directory):
  """The pack manifest of a folder of packed rows, checked by metadata only as read_manifest checks unpacked
  records: format, fields, every listed file present with its recorded size and rows, totals that add up. Raises
  InputError naming the manifest or the file at fault."""
  path = os.path.join(directory or "", PACK_MANIFEST)
  raw = load_manifest(path, PACK_FORMAT, "packed rows are written by `python -m data_prep.wikipedia pack`")
  try:
    settings, total = raw["settings"], raw["total"]
    k = int(settings["max_sequences"])
    paths, rows, sequences = [], 0, 0
    for name, entry in sorted(raw["files"].items()):
      missing = [f for f in PACK_FILE_FIELDS if f not in entry]
      if missing:
        raise InputError(f"{path}: entry {name!r} lacks {', '.join(missing)}")
      file_path = os.path.join(directory, name)
      check_listed_file(file_path, path, f"{int(entry['count']):,} packed rows")
      size = os.path.getsize(file_path)
      if size != int(entry["bytes"]):
        raise InputError(f"{file_path}: {size:,} bytes, {path} records {int(entry['bytes']):,} (a cut or changed "
                         "copy); copy it again or pack again")
      by_k = [int(n) for n in entry["rows_by_sequences"]]
      if int(entry["count"]) <= 0 or len(by_k) != k or sum(by_k) != int(entry["count"]) or \
          sum((j + 1) * n for j, n in enumerate(by_k)) != int(entry["sequences"]):
        raise InputError(f"{path}: entry {name!r}: {entry['count']} rows holding {entry['sequences']} sequences "
                         f"do not add up with rows_by_sequences {by_k}")
      paths.append(file_path)
      rows, sequences = rows + int(entry["count"]), sequences + int(entry["sequences"])
    if not paths:
      raise InputError(f"{path}: lists no packed files")
    if (int(total["rows"]), int(total["sequences"])) != (rows, sequences):
      raise InputError(f"{path}: total says {total['rows']} rows holding {total['sequences']} sequences, its files "
                       f"add up to {rows} and {sequences}")
    by_k = tuple(sum(int(e["rows_by_sequences"][j]) for e in raw["files"].values()) for j in range(k))
    return PackedSet(path, tuple(paths), rows, sequences, k, int(settings["max_seq_length"]),
                     int(settings["max_predictions_per_seq"]), by_k)
  except InputError:
    raise
  except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
    raise InputError(f"{path}: malformed pack manifest ({type(e).__name__}: {e}); pack the records again") from None
