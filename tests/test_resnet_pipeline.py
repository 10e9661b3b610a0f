"""ResNet input pipeline against the reference's data order and eval geometry, and the pipeline benchmark against the
real reference input_fn (from a checkout of mlcommons/training beside the project, or $MLCOMMONS_TRAINING)."""
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ROOT, skip_unless
from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import imagenet as imagenet_records
from tf_gp2bm.tasks.resnet import imagenet_input, pipeline_bench

REFERENCE = Path(os.environ.get("MLCOMMONS_TRAINING", ROOT.parent / "ref"))


def _jpeg(rng, height, width):
  pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format="JPEG", quality=95)
  return out.getvalue()


def write_records(root, train_images, val_images, train_shards=3):
  """Records + manifest in the converter's layout; image i has label i (one class per image) so order is visible."""
  rng = np.random.default_rng(0)
  num_classes = max(len(train_images), len(val_images))
  splits = {}
  for split, sizes, shards in (("train", train_images, train_shards), ("validation", val_images, 1)):
    names = [imagenet_records.shard_name(split, i, shards) for i in range(shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(root, n)) for n in names]
    counts = [0] * shards
    for i, (h, w) in enumerate(sizes):
      record = imagenet_records.make_example(_jpeg(rng, h, w), i, f"n{i:08d}", h, w, f"{split}_{i}.JPEG")
      writers[i % shards].write(record)
      counts[i % shards] += 1
    for writer in writers:
      writer.close()
    splits[split] = {"shards": {n: {"num_examples": c} for n, c in zip(names, counts)}}
  with open(os.path.join(root, imagenet_records.MANIFEST), "w") as f:
    json.dump({"format": imagenet_records.FORMAT, "label_offset": 0, "num_classes": num_classes,
               "splits": splits}, f)
  return imagenet_input.ImageNetRecords(str(root))


def test_each_training_pass_sees_every_image_once(tmp_path):
  n = 24
  records = write_records(tmp_path, [(40, 48)] * n, [(40, 48)])
  ds = imagenet_input.train_dataset(records, tf.distribute.InputContext(), 8, 32, n, seed=3)
  labels = [int(v) for batch in ds.take(2 * n // 8) for v in batch["label"].numpy()]
  assert sorted(labels[:n]) == list(range(n)), "first pass repeats or skips images"
  assert sorted(labels[n:]) == list(range(n)), "second pass repeats or skips images"
  assert labels[:n] != labels[n:], "the second pass should be reshuffled"


def _same_image_records(root, copies):
  """Two train shards that hold the same image `copies` times each: rank 0 reads one shard, rank 1 the other, so
  every difference between their outputs comes from the augmentation draws alone."""
  rng = np.random.default_rng(1)
  jpeg = _jpeg(rng, 60, 80)
  names = [imagenet_records.shard_name("train", i, 2) for i in range(2)] + [
      imagenet_records.shard_name("validation", 0, 1)]
  for name in names:
    with tf.io.TFRecordWriter(os.path.join(root, name)) as w:
      for _ in range(copies):
        w.write(imagenet_records.make_example(jpeg, 0, "n0", 60, 80, "same.JPEG"))
  splits = {"train": {"shards": {n: {"num_examples": copies} for n in names[:2]}},
            "validation": {"shards": {names[2]: {"num_examples": copies}}}}
  with open(os.path.join(root, imagenet_records.MANIFEST), "w") as f:
    json.dump({"format": imagenet_records.FORMAT, "label_offset": 0, "num_classes": 1, "splits": splits}, f)
  return imagenet_input.ImageNetRecords(str(root))


def _augmented(records, rank, seed, image_op="tf", images=24):
  """The images one rank's pipeline makes, as a sorted list of bytes (the parallel map may reorder them)."""
  ds = imagenet_input.train_dataset(records, tf.distribute.InputContext(2, rank), 4, 32, 1, seed=seed,
                                    image_op=image_op)
  return sorted(image.tobytes() for batch in ds.take(images // 4) for image in batch["image"].numpy())


def test_each_rank_draws_its_own_augmentation_and_a_seed_repeats_it(tmp_path):
  records = _same_image_records(tmp_path, 12)
  rank0, rank1 = _augmented(records, 0, seed=7), _augmented(records, 1, seed=7)
  assert len(set(rank0)) > 12, "one rank's crops and flips should differ from image to image"
  assert len(set(rank0) & set(rank1)) <= 2, "two ranks drew the same crops and flips for the same image"
  assert _augmented(records, 0, seed=7) == rank0, "the same seed and rank should draw the same crops and flips"
  assert len(set(_augmented(records, 0, seed=8)) & set(rank0)) <= 2, "another seed should draw other crops"


def test_fused_op_and_tf_ops_draw_the_same_windows_for_a_stream(tmp_path):
  from tf_gp2bm.tasks.resnet import jpeg_op
  skip_unless(jpeg_op.resolve("auto")[0] == "fused", "the fused image op does not build here")
  records = _same_image_records(tmp_path, 12)
  assert _augmented(records, 1, seed=3, image_op="fused") == _augmented(records, 1, seed=3, image_op="tf")


def test_eval_resize_truncates_sizes_like_the_reference(tmp_path):
  # 300x451: the short side goes to 256 and the long one to 384.85, which the reference truncates to 384.
  records = write_records(tmp_path, [(40, 48)], [(300, 451)])
  batch = next(iter(imagenet_input.eval_dataset(records, tf.distribute.InputContext(), 1, 224, 1)))
  image = tf.image.decode_jpeg(_val_jpeg(records), channels=3)

  def expected(width):
    resized = tf.compat.v1.image.resize(image, [256, width], method="bilinear", align_corners=False)
    left = (width - 224) // 2
    return tf.cast(tf.round(resized[16:240, left:left + 224]), tf.uint8).numpy()

  assert np.array_equal(batch["image"][0].numpy(), expected(384))
  assert not np.array_equal(expected(384), expected(385))  # the check tells truncation from rounding


def _val_jpeg(records):
  record = next(iter(tf.data.TFRecordDataset(records.shards("validation")[0][0])))
  return tf.io.parse_single_example(record, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})["image/encoded"]


def test_reference_dir_is_checked():
  with pytest.raises(InputError, match="--reference_dir"):
    pipeline_bench.find_reference(None)
  with pytest.raises(InputError, match="mlcommons/training"):
    pipeline_bench.find_reference(str(ROOT))
  with pytest.raises(InputError, match="--pipeline_cores"):
    pipeline_bench.parse_cores("x")
  with pytest.raises(InputError, match="may run on cores"):
    pipeline_bench.parse_cores("4096")


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no mlcommons/training checkout beside the project")
def test_pipeline_bench_runs_the_real_reference_on_the_same_core(tmp_path):
  records_dir = tmp_path / "records"
  records_dir.mkdir()
  write_records(records_dir, [(300, 400)] * 32, [(300, 400)], train_shards=4)
  lines = []
  core = max(os.sched_getaffinity(0))
  results = pipeline_bench.compare(str(records_dir), str(REFERENCE), [core], batch_size=8, batches=3, repeats=1,
                                   out=lines.append, stages=True)
  text = "\n".join(lines)
  assert "imagenet_preprocessing.py input_fn" in text and f"core(s) {core}" in text, text
  assert "where one image's CPU time goes (24 of our train records" in text, text
  for _, what in pipeline_bench.STAGES:
    assert re.search(re.escape(what) + r" +\d+\.\d{3}$", text, re.M), what
  for side in pipeline_bench.SIDES:
    assert results[side][0]["images_per_s"] > 0 and results[side][0]["images_per_cpu_s"] > 0
