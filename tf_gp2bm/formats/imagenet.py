"""The ImageNet TFRecord format that `--task=resnet` reads (the tensorflow/tpu imagenet_to_gcs layout).

Shared by the converter (data_prep.imagenet) and the demo-data generator so both write exactly what the
ResNet input pipeline parses. Labels: the record holds `label_offset + class_index`, where class_index runs over
the sorted synsets; the reference records use offset 1 (labels 1..1000) and the reference subtracts 1.

manifest.json beside the shards: format, label_offset, num_classes, synsets, and per split num_examples,
num_shards and shards {name: {num_examples, bytes, sha256}} (plus the converter's own facts). `read_manifest`
checks it against the files on disk by metadata only, so a task can call it before the clock starts.
"""
import dataclasses
import os

from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import check_listed_file, load_manifest

MANIFEST = "manifest.json"
FORMAT = "tf_gp2bm.imagenet/1"
REFERENCE_LABEL_OFFSET = 1
TRAIN_SHARDS, VAL_SHARDS = 1024, 128


def shard_name(split, index, num_shards):
  return f"{split}-{index:05d}-of-{num_shards:05d}"


SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class Shard:
  path: str
  num_examples: int
  bytes: int
  sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
  path: str
  label_offset: int
  num_classes: int
  synsets: tuple
  splits: dict  # split -> tuple of Shard, sorted by name
  raw: dict     # the whole JSON, for the converter's other facts

  def num_examples(self, split):
    return sum(s.num_examples for s in self.splits[split])


def read_manifest(directory, check_sizes=True):
  """The manifest of a converted folder, checked: format, every listed shard present with its recorded size
  (check_sizes), counts that add up, at least one non-empty shard per split. Reads no record.
  Raises InputError naming the manifest or the shard."""
  path = os.path.join(directory, MANIFEST)
  raw = load_manifest(path, FORMAT, "records must come from `python -m data_prep.imagenet convert` (or index "
                      "records made elsewhere with `python -m data_prep.imagenet index`)")
  try:
    splits = {split: _split_shards(directory, split, raw["splits"][split], check_sizes) for split in SPLITS}
    return Manifest(path, int(raw["label_offset"]), int(raw["num_classes"]), tuple(raw.get("synsets", ())),
                    splits, raw)
  except (KeyError, TypeError, ValueError) as e:
    if isinstance(e, InputError):
      raise
    raise InputError(f"{path}: malformed manifest ({type(e).__name__}: {e}); re-run "
                     "`python -m data_prep.imagenet index` on the folder") from None


def _split_shards(directory, split, info, check_sizes):
  path = os.path.join(directory, MANIFEST)
  shards = []
  for name in sorted(info["shards"]):
    entry = info["shards"][name]
    shard = Shard(os.path.join(directory, name), int(entry["num_examples"]), int(entry["bytes"]),
                  entry["sha256"])
    check_listed_file(shard.path, path, f"{shard.num_examples:,} records")
    if check_sizes and os.path.getsize(shard.path) != shard.bytes:
      raise InputError(f"{shard.path}: {os.path.getsize(shard.path):,} bytes, {path} records {shard.bytes:,}; "
                       "copy the data again or re-run `python -m data_prep.imagenet verify`")
    shards.append(shard)
  if not shards or sum(s.num_examples for s in shards) == 0:
    raise InputError(f"{path}: no {split} records listed")
  if sum(s.num_examples for s in shards) != int(info["num_examples"]):
    raise InputError(f"{path}: {split} num_examples {info['num_examples']} is not the sum over its shards")
  return tuple(shards)


def make_example(encoded_jpeg, label, synset, height, width, filename):
  """One serialized tf.train.Example (deterministic bytes for the same inputs)."""
  import tensorflow as tf  # here, not at the top: the converter's --help and listing need no TensorFlow
  as_bytes = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))  # noqa: E731
  as_int = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # noqa: E731
  feature = {
      "image/encoded": as_bytes(encoded_jpeg),
      "image/format": as_bytes(b"JPEG"),
      "image/class/label": as_int(label),
      "image/class/synset": as_bytes(synset.encode()),
      "image/height": as_int(height),
      "image/width": as_int(width),
      "image/filename": as_bytes(filename.encode()),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)
