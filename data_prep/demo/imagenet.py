r"""A small ImageNet-format data set that the ResNet smoke config learns in a few CPU minutes.

    python -m data_prep.demo.imagenet --out=/tmp/demo_imagenet

Each class is a hue with striped texture at a class-specific orientation, drawn at varied sizes and positions
on noise. 10 % of labels (train and validation) are replaced by a random other class, so accuracy stays well
below 1.0 (the checker rejects accuracy >= 1.0) while the 0.759 target is reachable. Records are written with
the same writer and manifest layout as the real converter and read by the same tf.data path.
"""
import argparse
import io
import os

import numpy as np
from PIL import Image

from data_prep.imagenet.bench import photo_like_jpeg
from tf_gp2bm.formats import imagenet as rec
from tf_gp2bm.files import atomic_output, sha256_file, write_json_atomic

LABEL_NOISE = 0.10


def _image(rng, cls, num_classes):
  h, w = rng.integers(40, 56, size=2)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  angle = np.pi * cls / num_classes
  stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.9 + rng.uniform(0, 6.3))
  hue = np.array([np.cos(2 * np.pi * cls / num_classes + k * 2.1) for k in range(3)]) * 0.5 + 0.5
  base = 40 + 170 * hue[None, None, :] * (0.55 + 0.45 * stripes[..., None])
  img = base + rng.normal(0, 18, size=(h, w, 3))
  return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _encode(image):
  buf = io.BytesIO()
  image.save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def generate(out, num_classes=10, train_per_class=120, val_per_class=30, train_shards=8, val_shards=4, seed=0,
             photo_like=False, restart_markers=True):
  """photo_like: ImageNet-sized (~400x350, ~100 KB) photo-like JPEGs instead of the learnable patterns, for
  input-pipeline benchmarks (`python -m tf_gp2bm.bench --pipeline_only`). Train JPEGs get a restart marker per
  MCU, as `data_prep.imagenet convert` writes them, when the fused image op is available (and restart_markers)."""
  import tensorflow as tf  # here, not at the top: --help answers without TensorFlow
  from tf_gp2bm.tasks.resnet import jpeg_op
  restart_every_mcu = None
  try:
    if restart_markers:
      jpeg_op.load()
      restart_every_mcu = jpeg_op.restart_every_mcu
  except jpeg_op.OpUnavailable as e:
    print(f"[demo] train JPEGs kept without restart markers: {e}")
  restarts = {"rewritten": 0, "kept": 0}
  os.makedirs(out, exist_ok=True)
  rng = np.random.default_rng(seed)
  synsets = [f"n{9000000 + i:08d}" for i in range(num_classes)]
  manifest = {"format": rec.FORMAT, "label_offset": rec.REFERENCE_LABEL_OFFSET, "num_classes": num_classes,
              "synsets": synsets, "splits": {}, "class_counts": {}, "repairs": [], "skipped": [],
              "tool": {"name": "data_prep.demo.imagenet", "version": 1},
              "sources": {"generated": {"seed": seed, "label_noise": LABEL_NOISE}}}
  for split, per_class, num_shards in (("train", train_per_class, train_shards),
                                       ("validation", val_per_class, val_shards)):
    examples = []
    for cls in range(num_classes):
      for i in range(per_class):
        label = cls if rng.random() >= LABEL_NOISE else int((cls + rng.integers(1, num_classes)) % num_classes)
        jpeg = photo_like_jpeg(rng) if photo_like else _encode(_image(rng, cls, num_classes))
        if split == "train" and restart_every_mcu:
          jpeg, rewritten = restart_every_mcu(jpeg)
          restarts["rewritten" if rewritten else "kept"] += 1
        examples.append((jpeg, label, f"{synsets[cls]}_{split}_{i}.JPEG"))
    order = rng.permutation(len(examples))
    shards = {}
    counts = {s: 0 for s in synsets}
    for shard in range(num_shards):
      name = rec.shard_name(split, shard, num_shards)
      path = os.path.join(out, name)
      mine = [examples[j] for j in order[shard::num_shards]]
      with atomic_output(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as w:
          for jpeg, label, fname in mine:
            w.write(rec.make_example(jpeg, rec.REFERENCE_LABEL_OFFSET + label, synsets[label], 0, 0, fname))
      for _, label, _ in mine:
        counts[synsets[label]] += 1
      shards[name] = {"num_examples": len(mine), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    manifest["splits"][split] = {"num_examples": len(examples), "num_shards": num_shards, "shards": shards}
    manifest["class_counts"][split] = counts
  manifest["restart_markers"] = restarts if restart_every_mcu else None
  write_json_atomic(os.path.join(out, rec.MANIFEST), manifest)
  return manifest


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True)
  p.add_argument("--num_classes", type=int, default=10)
  p.add_argument("--train_per_class", type=int, default=120)
  p.add_argument("--val_per_class", type=int, default=30)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--photo_like", action="store_true", help="ImageNet-sized photo-like JPEGs (pipeline benchmarks)")
  p.add_argument("--no_restart_markers", dest="restart_markers", action="store_false",
                 help="train JPEGs as encoded (as the reference's converter stores them), no restart markers")
  a = p.parse_args()
  m = generate(a.out, a.num_classes, a.train_per_class, a.val_per_class, seed=a.seed, photo_like=a.photo_like,
               restart_markers=a.restart_markers)
  print(f"wrote {m['splits']['train']['num_examples']} train / {m['splits']['validation']['num_examples']} "
        f"validation images to {a.out}")


if __name__ == "__main__":
  main()
