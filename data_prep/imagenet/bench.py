"""`bench`: images/s of this converter next to a straightforward one, on generated ImageNet-sized JPEGs.

The straightforward converter decodes every JPEG with PIL and re-encodes it (quality 100, like the reference's
repairs) in one process. This converter copies good JPEGs byte-for-byte after a header walk, and runs in
parallel. Both write the same record layout from the same files, already in the page cache.
"""
import argparse
import io
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

from tf_gp2bm.formats import imagenet as imagenet_records
from data_prep.imagenet import convert, plan
from tf_gp2bm.progress import Progress

NUM_CLASSES = 10
SIZE = (400, 350)  # ImageNet's mean is about 400x350 at about 110 KB


def photo_like_jpeg(rng):
  """Smooth color regions plus luminance grain: compresses like a photo (~100 KB at this size), unlike flat color."""
  width, height = SIZE[0] + int(rng.integers(-40, 41)), SIZE[1] + int(rng.integers(-40, 41))
  coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
  pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
  pixels += rng.normal(0, 22, (height, width, 1))
  out = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=94)
  return out.getvalue()


def generate(root, num_images):
  """train/<synset>/*.JPEG, plus a one-image validation set the converter's plan requires."""
  rng = np.random.default_rng(0)
  total = 0
  for i in range(num_images):
    synset = f"n{i % NUM_CLASSES:08d}"
    os.makedirs(os.path.join(root, "train", synset), exist_ok=True)
    data = photo_like_jpeg(rng)
    total += len(data)
    with open(os.path.join(root, "train", synset, f"{synset}_{i}.JPEG"), "wb") as f:
      f.write(data)
  os.makedirs(os.path.join(root, "val"))
  with open(os.path.join(root, "val", "ILSVRC2012_val_00000001.JPEG"), "wb") as f:
    f.write(photo_like_jpeg(rng))
  with open(os.path.join(root, "val_labels.txt"), "w") as f:
    f.write("n00000000\n")
  return total / num_images


def straightforward_convert(images, out, num_shards):
  """The simple converter this one must beat: decode and re-encode every image, one process."""
  import tensorflow as tf  # only the baseline converter decodes with TensorFlow
  writers = [tf.io.TFRecordWriter(os.path.join(out, imagenet_records.shard_name("train", i, num_shards)))
             for i in range(num_shards)]
  for n, (image, label) in enumerate(images):
    with open(os.path.join(image.path, image.name), "rb") as f:
      decoded = Image.open(f).convert("RGB")
    encoded = io.BytesIO()
    decoded.save(encoded, format="JPEG", quality=100)
    record = imagenet_records.make_example(encoded.getvalue(), label, image.synset, decoded.height, decoded.width,
                                           image.name)
    writers[n % num_shards].write(record)
  for writer in writers:
    writer.close()


def _warm(_):
  time.sleep(0.3)  # long enough that every worker takes one of these
  return os.getpid()


def _clear(out):
  """Removes the shards and their summaries, so the next pass writes everything again."""
  for directory in (out, os.path.join(out, convert.PARTS_DIR)):
    for entry in os.scandir(directory):
      if entry.is_file():
        os.remove(entry.path)


def _timed(fn):
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def run(num_images, workers, scratch=None):
  own_scratch = scratch is None
  scratch = scratch or tempfile.mkdtemp(prefix="imagenet_bench_")
  try:
    mean_bytes = generate(os.path.join(scratch, "src"), num_images)
    num_shards = max(4, 4 * workers)
    opts = argparse.Namespace(train=os.path.join(scratch, "src", "train"), val=os.path.join(scratch, "src", "val"),
                              val_labels=os.path.join(scratch, "src", "val_labels.txt"), synset_map=None,
                              allow_partial=True, skip_bad=False, seed=plan.DEFAULT_SEED,
                              train_shards=num_shards, val_shards=1,
                              restart_markers=False)  # the three converters compared all keep the JPEG bytes
    tasks = [t for t in plan.make_plan(opts, io.StringIO())[0] if t.split == "train"]
    outs = {k: os.path.join(scratch, k) for k in ("simple", "one", "all")}
    for path in outs.values():
      convert.prepare_out_dir(path)
    quiet = Progress("bench", stream=io.StringIO(), every_s=1e9)

    # Each converter runs once untimed first: the timed pass then measures steady work, not first-touch costs
    # (TF's file system setup, copy-on-write pages in freshly forked workers).
    everything = [im for t in tasks for im in t.images]
    straightforward_convert(everything[:len(tasks[0].images)], outs["simple"], num_shards)
    simple_s = _timed(lambda: straightforward_convert(everything, outs["simple"], num_shards))
    convert.run_tasks(tasks[:1], outs["one"], False, 1, quiet)
    _clear(outs["one"])
    one_s = _timed(lambda: convert.run_tasks(tasks, outs["one"], False, 1, quiet))
    pool = convert.start_pool(workers, outs["all"], False)
    try:
      for _ in range(20):  # wait until every worker has started
        if len(set(pool[0].map(_warm, range(workers), chunksize=1))) == workers:
          break
      convert.run_tasks(tasks, outs["all"], False, workers, quiet, pool=pool)
      _clear(outs["all"])
      all_s = _timed(lambda: convert.run_tasks(tasks, outs["all"], False, workers, quiet, pool=pool))
    finally:
      pool[0].terminate()
      pool[0].join()

    rows = [("straightforward: PIL decode + re-encode", 1, num_images / simple_s),
            ("data_prep.imagenet", 1, num_images / one_s),
            ("data_prep.imagenet", workers, num_images / all_s)]
    print(f"bench: {num_images} generated JPEGs, about {SIZE[0]}x{SIZE[1]}, {mean_bytes / 1000:.1f} KB mean; "
          f"{os.cpu_count()} cores; {num_shards} shards")
    print(f"{'converter':42s} {'workers':>7s} {'images/s':>10s} {'per worker':>11s}")
    for name, n, rate in rows:
      print(f"{name:42s} {n:7d} {rate:10.1f} {rate / n:11.1f}")
    print(f"speedup over straightforward: {rows[1][2] / rows[0][2]:.1f}x with 1 worker, "
          f"{rows[2][2] / rows[0][2]:.1f}x with {workers} workers")
    return rows
  finally:
    if own_scratch:
      shutil.rmtree(scratch, ignore_errors=True)
