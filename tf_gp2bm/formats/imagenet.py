"""The ImageNet TFRecord format that `--task=resnet` reads (the tensorflow/tpu imagenet_to_gcs layout).

Shared by the converter (data_prep.imagenet) and the demo-data generator so both write exactly what the
ResNet input pipeline parses. Labels: the record holds `label_offset + class_index`, where class_index runs over
the sorted synsets; the reference records use offset 1 (labels 1..1000) and the reference subtracts 1.
"""
import tensorflow as tf

MANIFEST = "manifest.json"
FORMAT = "tf_gp2bm.imagenet/1"
REFERENCE_LABEL_OFFSET = 1
TRAIN_SHARDS, VAL_SHARDS = 1024, 128


def shard_name(split, index, num_shards):
  return f"{split}-{index:05d}-of-{num_shards:05d}"


def _bytes(v):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _int(v):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))


def make_example(encoded_jpeg, label, synset, height, width, filename):
  """One serialized tf.train.Example (deterministic bytes for the same inputs)."""
  feature = {
      "image/encoded": _bytes(encoded_jpeg),
      "image/format": _bytes(b"JPEG"),
      "image/class/label": _int(label),
      "image/class/synset": _bytes(synset.encode()),
      "image/height": _int(height),
      "image/width": _int(width),
      "image/filename": _bytes(filename.encode()),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)
