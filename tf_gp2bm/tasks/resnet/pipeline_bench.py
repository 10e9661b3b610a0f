"""Input-pipeline benchmark: our train preprocessing vs the reference's, per CPU core, on the same records.

The reference side follows resnet-tf2 imagenet_preprocessing.py: it parses every feature including the bounding
box lists, crops with the record's boxes, and does the float32 mean subtraction on the host. Both sides run with
a one-thread private pool so the figure is images/s per core.
"""
import time

import tensorflow as tf

from tf_gp2bm.tasks.resnet import imagenet_input as ours


def _reference_parse(record):
  sparse_f32 = tf.io.VarLenFeature(tf.float32)
  f = tf.io.parse_single_example(record, {
      "image/encoded": tf.io.FixedLenFeature([], tf.string, ""),
      "image/class/label": tf.io.FixedLenFeature([], tf.int64, -1),
      "image/class/text": tf.io.FixedLenFeature([], tf.string, ""),
      "image/object/bbox/xmin": sparse_f32, "image/object/bbox/ymin": sparse_f32,
      "image/object/bbox/xmax": sparse_f32, "image/object/bbox/ymax": sparse_f32,
  })
  coords = [tf.expand_dims(f[f"image/object/bbox/{k}"].values, 0) for k in ("ymin", "xmin", "ymax", "xmax")]
  bbox = tf.transpose(tf.expand_dims(tf.concat(coords, 0), 0), [0, 2, 1])
  return f["image/encoded"], tf.cast(f["image/class/label"], tf.int32), bbox


def _reference_preprocess(record, size):
  encoded, label, bbox = _reference_parse(record)
  begin, crop, _ = tf.image.sample_distorted_bounding_box(
      tf.image.extract_jpeg_shape(encoded), bounding_boxes=bbox, min_object_covered=0.1,
      aspect_ratio_range=[0.75, 1.33], area_range=[0.05, 1.0], max_attempts=100, use_image_if_no_bounding_boxes=True)
  offset_y, offset_x, _ = tf.unstack(begin)
  h, w, _ = tf.unstack(crop)
  image = tf.image.decode_and_crop_jpeg(encoded, tf.stack([offset_y, offset_x, h, w]), channels=3)
  image = tf.image.random_flip_left_right(image)
  image = tf.compat.v1.image.resize(image, [size, size], method=tf.image.ResizeMethod.BILINEAR, align_corners=False)
  image = image - tf.constant(ours.CHANNEL_MEANS, shape=[1, 1, 3])
  return tf.cast(image, tf.float32), label - 1


def _one_core(ds):
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  return ds.with_options(options)


def _rate(ds, batches, batch_size):
  it = iter(ds)
  next(it)  # open files, fill the pipeline
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - t0)


def compare(records, batches, batch_size, image_size, head_classes):
  files = [f for f, _ in records.shards("train")]
  ctx = tf.distribute.InputContext()
  mine = _one_core(ours.train_dataset(records, ctx, batch_size, image_size, head_classes, seed=0))
  ref = tf.data.Dataset.from_tensor_slices(files).repeat()
  ref = ref.interleave(tf.data.TFRecordDataset, cycle_length=ours.CYCLE_LENGTH, num_parallel_calls=tf.data.AUTOTUNE)
  ref = ref.shuffle(ours.SHUFFLE_BUFFER, seed=0).map(lambda r: _reference_preprocess(r, image_size),
                                                      num_parallel_calls=tf.data.AUTOTUNE)
  ref = _one_core(ref.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
  r_ref = _rate(ref, batches, batch_size)
  r_ours = _rate(mine, batches, batch_size)
  return r_ours, r_ref
