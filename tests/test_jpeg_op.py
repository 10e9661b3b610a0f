"""The fused train-image op against TensorFlow's own op chain (pixel for pixel), the lossless restart-marker rewrite
and the cut it enables (checked with TensorFlow's decoder), its errors, its self-check, and the fallback when it
cannot be built."""
import io
import json
import os
import shutil
import subprocess
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import run_module, run_train, skip_unless
from tf_gp2bm.formats import imagenet as imagenet_records
from tf_gp2bm.tasks.resnet import imagenet_input, jpeg_op

HEIGHT, WIDTH = 123, 157  # off the 8- and 16-pixel block grids on purpose


def _photo(seed, height=HEIGHT, width=WIDTH):
  """Smooth colour regions plus grain: JPEG artefacts and chroma detail like a photo's."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (height // 10 + 2, width // 10 + 2, 3), dtype=np.uint8)
  pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
  return Image.fromarray(np.clip(pixels + rng.normal(0, 14, (height, width, 1)), 0, 255).astype(np.uint8))


def _jpeg(image, **options):
  out = io.BytesIO()
  image.save(out, format="JPEG", **options)
  return out.getvalue()


KINDS = {  # PIL's subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    "4:2:0": lambda im: _jpeg(im, quality=90, subsampling=2),
    "4:2:2": lambda im: _jpeg(im, quality=90, subsampling=1),
    "4:4:4": lambda im: _jpeg(im, quality=95, subsampling=0),
    "gray": lambda im: _jpeg(im.convert("L"), quality=90),
    "progressive": lambda im: _jpeg(im, quality=90, progressive=True),
    "cmyk": lambda im: _jpeg(im.convert("CMYK"), quality=95),
    "tiny": lambda im: _jpeg(im.resize((13, 9)), quality=90),
}
REWRITABLE = {"4:2:0", "4:2:2", "4:4:4", "gray", "tiny"}


@pytest.fixture(scope="module")
def op():
  skip_unless(jpeg_op.resolve("auto")[0] == "fused", "the fused image op cannot be built here (needs c++ and "
              "libjpeg-dev)")
  return jpeg_op.load()


def _windows(rng, height, width, count):
  for k in range(count):
    h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
    if k % 3 == 0:  # small windows: the cut path decodes only a few MCUs
      h, w = max(1, height // 4), max(1, width // 4)
    yield [int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w], bool(k % 2), \
        (224, 40, 64)[k % 3]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fused_op_gives_tensorflows_pixels(op, kind):
  encoded = KINDS[kind](_photo(1))
  restarted, _ = jpeg_op.restart_every_mcu(encoded)
  height, width = (int(v) for v in tf.image.extract_jpeg_shape(encoded)[:2])
  for window, flip, size in _windows(np.random.default_rng(2), height, width, 18):
    want = jpeg_op.tf_decode_crop_flip_resize(encoded, window, tf.constant(flip), size).numpy()
    for name, jpeg in (("as encoded", encoded), ("with restart markers", restarted)):
      got = jpeg_op.decode_crop_flip_resize(jpeg, window, flip, size).numpy()
      assert got.shape == (size, size, 3) and got.dtype == np.uint8
      assert np.array_equal(want, got), f"{kind} {name}: window {window} flip {flip} size {size}: " \
          f"{int((want != got).sum())} values differ"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_restart_rewrite_keeps_the_pixels_and_lets_a_window_be_cut(op, kind):
  encoded = KINDS[kind](_photo(3))
  restarted, rewritten = jpeg_op.restart_every_mcu(encoded)
  assert rewritten == (kind in REWRITABLE)
  if not rewritten:  # progressive and CMYK JPEGs are stored as they came
    assert restarted == encoded
    return
  assert restarted != encoded
  assert np.array_equal(tf.io.decode_jpeg(encoded, channels=3), tf.io.decode_jpeg(restarted, channels=3))
  assert jpeg_op.restart_every_mcu(restarted) == (restarted, True)  # already in the layout: left alone
  if kind == "tiny":
    return  # one or two MCUs: nothing to cut away
  window = [70, 90, 30, 40]
  cut, cut_window, was_cut = (t.numpy() for t in jpeg_op.cut_around(restarted, window))
  assert was_cut and len(cut) < 0.4 * len(restarted), (len(cut), len(restarted))
  # TensorFlow's own decoder sees the window's pixels in the cut.
  assert np.array_equal(tf.image.decode_and_crop_jpeg(cut, cut_window, channels=3),
                        tf.image.decode_and_crop_jpeg(encoded, window, channels=3))
  same, same_window, was_cut = (t.numpy() for t in jpeg_op.cut_around(encoded, window))
  assert (same, list(same_window), was_cut) == (encoded, window, False)  # no restart markers: nothing to cut


def test_bad_jpegs_and_windows_are_refused_with_the_reason(op):
  encoded = KINDS["4:2:0"](_photo(4))
  restarted, _ = jpeg_op.restart_every_mcu(encoded)
  cases = [(encoded[:len(encoded) // 2], [0, 0, HEIGHT, WIDTH], "premature end"),
           (restarted[:len(restarted) // 2], [HEIGHT - 20, 0, 20, 20], "premature end"),  # no cut: decoded whole
           (b"not a jpeg at all", [0, 0, 4, 4], "Invalid JPEG data"),
           (encoded, [100, 0, 30, WIDTH], f"does not fit the {HEIGHT}x{WIDTH} image"),
           (restarted, [0, 150, 10, 10], f"does not fit the {HEIGHT}x{WIDTH} image")]
  for jpeg, window, message in cases:
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
      jpeg_op.decode_crop_flip_resize(jpeg, window, False, 32)
    with pytest.raises(tf.errors.InvalidArgumentError):  # TensorFlow's ops refuse the same inputs
      jpeg_op.tf_decode_crop_flip_resize(jpeg, window, tf.constant(False), 32)
  # A window above the cut-off part decodes, as with TensorFlow's ops: the data it needs is all there.
  top = [0, 0, 20, 20]
  assert np.array_equal(jpeg_op.decode_crop_flip_resize(restarted[:len(restarted) // 2], top, False, 32),
                        jpeg_op.tf_decode_crop_flip_resize(encoded, top, tf.constant(False), 32))


def test_self_check_catches_a_kernel_with_other_pixels(op):
  assert jpeg_op.self_check(op) == ""
  mirrored = types.SimpleNamespace(  # the real op with its flip the wrong way round: a broken build
      tf_gp2bm_jpeg_restart_every_mcu=op.tf_gp2bm_jpeg_restart_every_mcu,
      tf_gp2bm_decode_crop_flip_resize_jpeg=lambda jpeg, window, flip, size: op.tf_gp2bm_decode_crop_flip_resize_jpeg(
          jpeg, window, not flip, size=size))
  assert "pixels differ from TensorFlow's" in jpeg_op.self_check(mirrored)


def _records(root, jpegs):
  """One shard, image i labelled i, with the manifest the task reads."""
  name = imagenet_records.shard_name("train", 0, 1)
  with tf.io.TFRecordWriter(os.path.join(root, name)) as writer:
    for i, jpeg in enumerate(jpegs):
      writer.write(imagenet_records.make_example(jpeg, i, f"n{i:08d}", 0, 0, f"{i}.JPEG"))
  manifest = {"format": imagenet_records.FORMAT, "label_offset": 0, "num_classes": len(jpegs),
              "splits": {"train": {"shards": {name: {"num_examples": len(jpegs)}}}}}
  with open(os.path.join(root, imagenet_records.MANIFEST), "w") as f:
    json.dump(manifest, f)
  return imagenet_input.ImageNetRecords(str(root))


def test_fused_and_tf_pipelines_give_the_same_batches(op, tmp_path):
  jpegs = [jpeg_op.restart_every_mcu(KINDS["4:2:0"](_photo(10 + i, 90 + 7 * i, 140 - 5 * i)))[0] for i in range(12)]
  records = _records(tmp_path, jpegs)
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1  # one thread: the random crops are drawn in the same order
  images = {}
  for image_op in ("tf", "fused"):
    ds = imagenet_input.train_dataset(records, tf.distribute.InputContext(), 4, 48, len(jpegs), seed=5,
                                      image_op=image_op).with_options(options)
    images[image_op] = {int(label): image for batch in ds.take(6)
                        for label, image in zip(batch["label"].numpy(), batch["image"].numpy())}
  assert sorted(images["tf"]) == list(range(len(jpegs)))
  for label in images["tf"]:
    assert np.array_equal(images["tf"][label], images["fused"][label]), f"image {label} differs"


def test_without_a_compiler_auto_falls_back_and_fused_is_refused(tmp_path, demo_imagenet):
  # The trainer runs by its absolute path, so an empty PATH hides only the compiler.
  env = {"GP2BM_OP_CACHE": str(tmp_path / "empty_cache"), "PATH": str(tmp_path)}
  r = run_module("tf_gp2bm.tasks.resnet.jpeg_op", env=env)
  assert r.returncode == 1 and "no `c++` on PATH" in r.stderr and "libjpeg-dev" in r.stderr, r.stderr
  common = ("--task=resnet", "--flagfile=flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}", "--dry_run")
  r = run_train(*common, f"--output_dir={tmp_path / 'auto'}", env=env)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "train images: TensorFlow's ops: the fused op is unavailable" in r.stdout
  r = run_train(*common, "--image_op=fused", f"--output_dir={tmp_path / 'fused'}", env=env)
  assert r.returncode == 2 and "--image_op=fused: " in r.stderr and "no `c++` on PATH" in r.stderr, r.stderr[-2000:]


def _library_without_the_op(folder):
  """A real shared library that TensorFlow loads but that registers none of the fused op's ops."""
  source = folder / "empty.cc"
  source.write_text('extern "C" int gp2bm_nothing() { return 0; }\n')
  path = folder / "empty.so"
  subprocess.run(["c++", "-shared", "-fPIC", str(source), "-o", str(path)], check=True)
  return path


@pytest.mark.slow
def test_a_cached_library_that_cannot_serve_falls_back_or_is_refused(tmp_path, demo_imagenet, monkeypatch):
  # Every way a cached library can fail ends in OpUnavailable naming it (which auto falls back from), never in
  # an AttributeError or a raw TensorFlow error.
  empty = _library_without_the_op(tmp_path)
  with pytest.raises(jpeg_op.OpUnavailable, match="lacks the op"):
    jpeg_op._load_checked(str(empty))
  garbage = tmp_path / "garbage.so"
  garbage.write_bytes(b"not a shared library")
  with pytest.raises(jpeg_op.OpUnavailable, match="does not load"):
    jpeg_op._load_checked(str(garbage))
  # The trainer, with that empty library in the op cache where its build would be.
  cache = tmp_path / "cache"
  monkeypatch.setenv("GP2BM_OP_CACHE", str(cache))
  cached = jpeg_op.library_path()
  os.makedirs(os.path.dirname(cached))
  shutil.copyfile(empty, cached)
  env = {"GP2BM_OP_CACHE": str(cache)}
  common = ("--task=resnet", "--flagfile=flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}", "--dry_run")
  r = run_train(*common, f"--output_dir={tmp_path / 'auto'}", env=env)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "train images: TensorFlow's ops: the fused op is unavailable" in r.stdout and "lacks the op" in r.stdout
  r = run_train(*common, "--image_op=fused", f"--output_dir={tmp_path / 'fused'}", env=env)
  assert r.returncode == 2 and "--image_op=fused: " in r.stderr and cached in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_the_bench_stage_profile_times_the_cut_alone(op, demo_imagenet):
  """`bench --pipeline_stages` prints each stage, the fused op's cut around the window among them."""
  from tf_gp2bm.tasks.resnet import pipeline_bench
  ms = pipeline_bench.profile(str(demo_imagenet), 4, 32)
  assert list(ms) == [name for name, _ in pipeline_bench.STAGES] and ms["cut"] > 0
