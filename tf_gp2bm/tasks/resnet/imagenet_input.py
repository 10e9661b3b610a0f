"""tf.data over ImageNet TFRecords with the MLPerf reference preprocessing (resnet-tf2 imagenet_preprocessing.py).

Train: shuffled file list, interleave, record shuffle, then repeat (each image once per pass);
sample_distorted_bounding_box random crop fused with the JPEG decode, random flip, bilinear resize. Eval: decode,
aspect-preserving resize of the short side to 256/224 x size (sizes truncated like the reference), central crop;
every example exactly once over all ranks, padded to the same number of batches per rank (padding weight 0).

Speed: the host hands the device uint8 images (rounded after the resize) and the channel-mean subtraction runs
inside the compiled step (`normalize`), so the host moves a quarter of the bytes; only the two features we use are
parsed. Where the host time goes and what it costs per core: docs/performance.md.
"""
import math
import os
import re

import tensorflow as tf

from tf_gp2bm import data_service as service
from tf_gp2bm.formats import imagenet as imagenet_records
from tf_gp2bm.files import read_json
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.resnet import jpeg_op

CHANNEL_MEANS = (123.68, 116.78, 103.94)  # reference _CHANNEL_MEANS; no std division in the reference
SHUFFLE_BUFFER = 10_000
FILE_SHUFFLE_BUFFER = 1024
CYCLE_LENGTH = 10
LABEL_ERROR = "label out of range in"  # the label check's message; ResNetTask.diagnose_data_error reads it


class ImageNetRecords:
  """The records of one data dir and their manifest (counts per shard, label convention)."""

  def __init__(self, data_dir):
    if not data_dir:
      raise InputError("--data_dir is required: a directory of ImageNet TFRecords written by data_prep.imagenet")
    if not os.path.isdir(data_dir):
      raise InputError(f"--data_dir={data_dir}: directory does not exist")
    path = os.path.join(data_dir, imagenet_records.MANIFEST)
    if not os.path.exists(path):
      raise InputError(f"{path}: manifest not found; records must come from `python -m data_prep.imagenet convert` "
                       "(or index records made elsewhere with `python -m data_prep.imagenet index`)")
    try:
      self.manifest = read_json(path)
    except ValueError as e:
      raise InputError(str(e)) from None
    if self.manifest.get("format") != imagenet_records.FORMAT:
      raise InputError(f"{path}: format {self.manifest.get('format')!r}, expected {imagenet_records.FORMAT!r}")
    self.data_dir = data_dir
    self.label_offset = int(self.manifest["label_offset"])
    self.num_classes = int(self.manifest["num_classes"])

  def shards(self, split):
    info = self.manifest.get("splits", {}).get(split)
    if not info or not info.get("shards"):
      raise InputError(f"{self.data_dir}/manifest.json: no {split!r} shards listed")
    names = sorted(info["shards"])
    missing = [n for n in names if not os.path.exists(os.path.join(self.data_dir, n))]
    if missing:
      raise InputError(f"--data_dir={self.data_dir}: {len(missing)} {split} file(s) listed in the manifest are "
                       f"missing, e.g. {missing[0]}")
    empty = [n for n in names if info["shards"][n]["num_examples"] <= 0]
    if len(empty) == len(names):
      raise InputError(f"--data_dir={self.data_dir}: every {split} shard is empty")
    return [(os.path.join(self.data_dir, n), int(info["shards"][n]["num_examples"])) for n in names]

  def num_examples(self, split):
    return sum(n for _, n in self.shards(split))

  def label_mapping(self, head_classes):
    """Offset to subtract from a record label to get the head's class index, checked at startup."""
    if head_classes == self.num_classes:
      return self.label_offset
    if head_classes == self.num_classes + 1 and self.label_offset == 1:
      return 0  # the 1001-class convention: class 0 is "background", record labels are used as they are
    raise InputError(f"--num_classes={head_classes} does not fit the records in {self.data_dir}: they hold labels "
                     f"{self.label_offset}..{self.label_offset + self.num_classes - 1} ({self.num_classes} classes); "
                     f"expected --num_classes={self.num_classes}"
                     + (f" or {self.num_classes + 1}" if self.label_offset == 1 else ""))


def _parse(record, filename):
  features = tf.io.parse_single_example(record, {
      "image/encoded": tf.io.FixedLenFeature([], tf.string),
      "image/class/label": tf.io.FixedLenFeature([], tf.int64),
  })
  return features["image/encoded"], features["image/class/label"], filename


def _checked_label(label, filename, offset, num_classes):
  label = label - offset
  tf.debugging.assert_less(label, tf.cast(num_classes, tf.int64), message=[LABEL_ERROR, filename])
  tf.debugging.assert_non_negative(label, message=[LABEL_ERROR, filename])
  return tf.cast(label, tf.int32)


# How each train image is made from (encoded, crop window, flip, size): the same pixels either way
# (tests/test_jpeg_op.py); the fused op is one C++ op, TensorFlow's is the reference's op chain.
IMAGE_MAKERS = {"fused": jpeg_op.decode_crop_flip_resize, "tf": jpeg_op.tf_decode_crop_flip_resize}


def augment_stream(seed, rank):
  """The key of one rank's augmentation stream: the reference's replicas each draw their own crops and flips, so
  the key holds the rank as well as the run seed (one global seed with fixed op seeds gave every rank the same)."""
  return tf.constant([seed, rank], tf.int64)


def element_seed(stream, index):
  """The stateless seed of the index-th image a stream augments: a pure function of (seed, rank, index), so the
  same seed gives the same draws whatever thread runs the map, and --deterministic keeps them."""
  return tf.random.experimental.stateless_fold_in(stream, index)


def _random_crop_flip(encoded, seed):
  """The reference's augmentation draws, stateless from `seed` (element_seed): a crop window (y, x, height, width)
  and a left-right flip, with the reference's sampling parameters."""
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  shape = tf.image.extract_jpeg_shape(encoded)
  bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
  begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=bbox, seed=crop_seed, min_object_covered=0.1, aspect_ratio_range=[0.75, 1.33],
      area_range=[0.05, 1.0], max_attempts=100, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
  flip = tf.random.stateless_uniform([], flip_seed, 0, 1.0) < 0.5  # tf.image.random_flip_left_right's draw
  return window, flip


def _center_crop_decode(encoded, size):
  image = tf.image.decode_jpeg(encoded, channels=3)
  resize_min = int(round(size * 256 / 224))
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  scale = resize_min / tf.minimum(h, w)
  nh, nw = tf.cast(h * scale, tf.int32), tf.cast(w * scale, tf.int32)  # truncates, as the reference does
  image = tf.compat.v1.image.resize(image, [nh, nw], method=tf.image.ResizeMethod.BILINEAR, align_corners=False)
  top, left = (nh - size) // 2, (nw - size) // 2
  return tf.slice(image, [top, left, 0], [size, size, 3])


def normalize(images, dtype):
  """The reference's channel-mean subtraction, run on the device inside the step."""
  images = tf.cast(images, tf.float32) - tf.constant(CHANNEL_MEANS, shape=[1, 1, 1, 3])
  return tf.cast(images, dtype)


def shard_files(files, input_context):
  """This rank's disjoint share of the files (round robin, so shard sizes stay balanced)."""
  return files[input_context.input_pipeline_id::input_context.num_input_pipelines]


def train_records(records, input_context, shuffle_seed):
  """One pass over this rank's train records, (serialized record, file name), files and records shuffled."""
  files = [f for f, _ in records.shards("train")]
  mine = shard_files(files, input_context)
  if not mine:
    raise InputError(f"--data_dir={records.data_dir}: {len(files)} train files cannot be split over "
                     f"{input_context.num_input_pipelines} ranks")
  ds = tf.data.Dataset.from_tensor_slices(mine).shuffle(FILE_SHUFFLE_BUFFER, seed=shuffle_seed)
  ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20).map(lambda r: (r, f)),
                     cycle_length=CYCLE_LENGTH, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  return ds.shuffle(SHUFFLE_BUFFER, seed=shuffle_seed)


def train_dataset(records, input_context, batch_size, image_size, head_classes, seed, image_op="tf",
                  data_service=None):
  """image_op: 'fused' or 'tf' (IMAGE_MAKERS); the task resolves --image_op to one of them at init.
  seed: the run's seed; this rank's shuffles and augmentation stream are derived from it and the rank.
  data_service: HOST:PORT of a tf.data service dispatcher (tf_gp2bm.data_service): its workers read and augment
  this rank's images, one pass per job iteration, and this process receives the batches."""
  make_image = IMAGE_MAKERS[image_op]
  offset = records.label_mapping(head_classes)
  stream = augment_stream(seed, input_context.input_pipeline_id)
  if data_service:
    # Each pass is a new iteration of the rank's job, built afresh on the workers: a fixed shuffle seed would
    # give every pass the same order there, so the service shuffles unseeded. A worker cannot count this rank's
    # images (dynamic sharding splits the rank's files over workers, each counting its own), so each image draws
    # a random index into the rank's stream. Neither is reproducible: the service refuses --deterministic.
    ds, indices = train_records(records, input_context, None), tf.data.Dataset.random()
  else:
    # Repeat after the record shuffle, as the reference: the buffer never mixes two passes, so every image is
    # seen once per pass (files and records are reshuffled on each pass).
    ds = train_records(records, input_context, seed + input_context.input_pipeline_id).repeat()
    indices = tf.data.Dataset.counter()  # the i-th image this rank augments gets the stream's i-th draw

  @tf.autograph.experimental.do_not_convert  # straight-line TF ops; nothing for AutoGraph to convert
  def preprocess(record_file, index):
    encoded, label, filename = _parse(*record_file)
    window, flip = _random_crop_flip(encoded, element_seed(stream, index))
    image = make_image(encoded, window, flip, image_size)
    return {"image": image, "label": _checked_label(label, filename, offset, head_classes)}

  ds = tf.data.Dataset.zip((ds, indices)).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  if data_service:
    # Workers batch their share of a pass whole (the last batch of each worker is short), the trainer repeats
    # the passes and cuts its own batches across them, as the local pipeline does: no image is dropped.
    ds = service.distribute(ds.batch(batch_size), data_service, input_context)
    return ds.repeat().unbatch().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_batches_per_replica(records, num_pipelines, batch_size):
  """Same on every rank: the largest per-rank example count, in batches."""
  counts = [0] * num_pipelines
  for i, (_, n) in enumerate(records.shards("validation")):
    counts[i % num_pipelines] += n
  return math.ceil(max(counts) / batch_size), counts


def eval_dataset(records, input_context, batch_size, image_size, head_classes):
  shards = records.shards("validation")
  n = input_context.num_input_pipelines
  mine = shard_files([f for f, _ in shards], input_context)
  num_batches, counts = eval_batches_per_replica(records, n, batch_size)
  offset = records.label_mapping(head_classes)

  @tf.autograph.experimental.do_not_convert
  def preprocess(record, filename):
    encoded, label, filename = _parse(record, filename)
    image = jpeg_op.to_uint8(_center_crop_decode(encoded, image_size))
    return {"image": image, "label": _checked_label(label, filename, offset, head_classes),
            "weight": tf.constant(1.0)}

  pad = {"image": tf.zeros([image_size, image_size, 3], tf.uint8), "label": tf.constant(0, tf.int32),
         "weight": tf.constant(0.0)}
  ds = tf.data.Dataset.from_tensor_slices(mine) if mine else tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
  ds = ds.flat_map(lambda f: tf.data.TFRecordDataset(f).map(lambda r: (r, f)))
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat(num_batches * batch_size - counts[
      input_context.input_pipeline_id]))
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def find_undecodable_image(files, decode):
  """Post-mortem after an image failed to decode mid-run: (file, record index, image name, why) for the first
  record of `files` whose image `decode` (encoded -> image) rejects, or None. Decodes in parallel; only the bad
  record is read a second time, for its name and the decoder's message."""
  def decodes(index, record):
    encoded = tf.io.parse_single_example(record, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
    return index, tf.reshape(decode(encoded["image/encoded"]), [-1])[0]  # a pixel: a static shape would let the
    # decode be pruned as dead code

  for f in files:
    good = tf.data.TFRecordDataset(f).enumerate().map(decodes, num_parallel_calls=tf.data.AUTOTUNE,
                                                       deterministic=True).ignore_errors()
    expected = 0
    for index, _ in good:
      if int(index) != expected:
        break
      expected += 1
    record = next(iter(tf.data.TFRecordDataset(f).skip(expected).take(1)), None)
    if record is None:
      continue  # every record of this file decodes
    features = tf.io.parse_single_example(record, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=b"")})
    try:
      decode(features["image/encoded"])
      why = "it decodes alone; the pipeline rejected it"
    except tf.errors.OpError as e:
      why = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:.*$", "", e.message.strip().splitlines()[0])
    return f, expected, features["image/filename"].numpy().decode(errors="replace") or "(no image/filename)", why
  return None


def find_corrupt_file(files):
  """Post-mortem after a DataLossError: reads each file of this rank in order and names the first bad one."""
  for f in files:
    try:
      for _ in tf.data.TFRecordDataset(f):
        pass
    except tf.errors.DataLossError as e:
      return f, e.message
  return None, None
