"""Exactly-once data: each eval sees every example of the eval set once over all ranks, and the ranks' training
shards split the training set without overlap or gap; an eval that sees an example twice stops the run.

Examples are identified by content, read with an oracle that does not use the input pipeline: ImageNet examples
are written here as solid-colour JPEGs (a colour survives random crops, flips and resizing), so the colour of a
preprocessed image names its example; BERT examples are named by their token ids. The oracle is a sequential read
of the record files with tf.train.Example and PIL.
"""
import collections
import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import build_trainer
from tf_gp2bm.errors import InputError
from tf_gp2bm.files import sha256_file, write_json_atomic
from tf_gp2bm.formats import imagenet as imagenet_format

pytestmark = pytest.mark.slow

LEVELS = (20, 70, 120, 170, 220)  # colour channel values 50 apart: JPEG and resizing move them by a few units
CLASSES = 10
# Uneven shard sizes, so that no rank count splits the examples evenly by accident.
TRAIN_SHARDS, VAL_SHARDS = (7, 7, 6, 6, 5), (9, 8, 6)
RESNET_FLAGS = ("--resnet_depth=10", f"--num_classes={CLASSES}", f"--train_examples={sum(TRAIN_SHARDS)}",
                "--global_batch_size=4", "--warmup_epochs=0")


def _colour(index):
  return tuple(LEVELS[(index // len(LEVELS) ** c) % len(LEVELS)] for c in range(3))


def _colour_index(pixels):
  """The example index of an image (H, W, 3) from its mean colour."""
  levels = np.rint((pixels.reshape(-1, 3).mean(axis=0) - LEVELS[0]) / (LEVELS[1] - LEVELS[0])).astype(int)
  return int(sum(int(v) * len(LEVELS) ** c for c, v in enumerate(levels)))


def _write_colour_records(out):
  """An ImageNet-format folder (records + manifest) whose example i is a solid image of _colour(i)."""
  os.makedirs(out)
  synsets = [f"n{9100000 + c:08d}" for c in range(CLASSES)]
  manifest = {"format": imagenet_format.FORMAT, "label_offset": imagenet_format.REFERENCE_LABEL_OFFSET,
              "num_classes": CLASSES, "synsets": synsets, "splits": {}}
  index = 0
  for split, sizes in (("train", TRAIN_SHARDS), ("validation", VAL_SHARDS)):
    shards = {}
    for s, size in enumerate(sizes):
      name = imagenet_format.shard_name(split, s, len(sizes))
      path = os.path.join(out, name)
      with tf.io.TFRecordWriter(path) as writer:
        for _ in range(size):
          buf = io.BytesIO()
          Image.new("RGB", (44, 40), _colour(index)).save(buf, format="JPEG", quality=95)
          label = index % CLASSES
          writer.write(imagenet_format.make_example(buf.getvalue(), imagenet_format.REFERENCE_LABEL_OFFSET + label,
                                                    synsets[label], 40, 44, f"{index}.JPEG"))
          index += 1
      shards[name] = {"num_examples": size, "bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    manifest["splits"][split] = {"num_examples": sum(sizes), "num_shards": len(sizes), "shards": shards}
  write_json_atomic(os.path.join(out, imagenet_format.MANIFEST), manifest)
  return out


@pytest.fixture(scope="module")
def colour_imagenet(tmp_path_factory):
  return _write_colour_records(str(tmp_path_factory.mktemp("colour") / "data"))


def _record_files(data_dir, split):
  return [os.path.join(data_dir, n) for n in sorted(os.listdir(data_dir)) if n.startswith(split + "-")]


def _read_imagenet(files):
  """Oracle: the example indices of record files read in order, decoded with PIL."""
  out = []
  for path in files:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      feature = tf.train.Example.FromString(record).features.feature
      image = np.asarray(Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0])).convert("RGB"))
      out.append(_colour_index(image))
  return out


def _read_bert(files):
  out = []
  for path in files:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      feature = tf.train.Example.FromString(record).features.feature
      out.append(tuple(feature["input_ids"].int64_list.value) + tuple(feature["masked_lm_positions"].int64_list.value))
  return out


def _bert_key(example):
  return tuple(int(x) for x in example["input_word_ids"]) + tuple(int(x) for x in example["masked_lm_positions"])


def _resnet_task(data_dir, *flags_):
  return build_trainer("resnet", *RESNET_FLAGS, f"--data_dir={data_dir}", *flags_, build=False).task


def _bert_task(demo_bert, *flags_):
  return build_trainer("bert", *demo_bert.flags, *flags_, build=False).task


def _eval_seen(task, ranks, identify, is_real, weight):
  """What the ranks' eval datasets yield: real examples by identity, each rank's batch count, the total weight
  (padding must weigh 0)."""
  seen, batches, total = [], [], 0.0
  for rank in range(ranks):
    n = 0
    for batch in task.eval_dataset(tf.distribute.InputContext(ranks, rank)).as_numpy_iterator():
      n += 1
      total += float(np.sum(batch[weight], dtype=np.float64))
      seen += [identify(batch, i) for i in range(len(batch[weight])) if is_real(batch, i)]
    batches.append(n)
  return seen, batches, total


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_resnet_eval_sees_the_eval_set_once_over_ranks(colour_imagenet, ranks, trainer_factory):
  task = _resnet_task(colour_imagenet, "--eval_batch_size=4")
  seen, batches, weight = _eval_seen(task, ranks, lambda b, i: _colour_index(b["image"][i]),
                                     lambda b, i: b["weight"][i] > 0, "weight")
  want = _read_imagenet(_record_files(colour_imagenet, "validation"))
  assert len(set(want)) == len(want) == sum(VAL_SHARDS)
  assert collections.Counter(seen) == collections.Counter(want)
  assert weight == len(want)
  assert len(set(batches)) == 1, f"ranks run different eval batch counts: {batches}"


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_bert_eval_sees_the_eval_set_once_over_ranks(demo_bert, ranks, trainer_factory):
  task = _bert_task(demo_bert, "--eval_batch_size=16")
  seen, batches, weight = _eval_seen(task, ranks, lambda b, i: _bert_key({k: v[i] for k, v in b.items()}),
                                     lambda b, i: b["input_mask"][i].sum() > 0, "masked_lm_weights")
  want = _read_bert(sorted(task.eval_files))
  assert len(want) == task.eval_records
  assert collections.Counter(seen) == collections.Counter(want)
  assert weight == pytest.approx(task.eval_weight)
  assert len(set(batches)) == 1, f"ranks run different eval batch counts: {batches}"


def _first_passes(task, ranks, identify, total):
  """Each rank's training stream up to its first repeated example: one pass over its shard, as passes never mix
  (the record shuffle comes before the repeat)."""
  passes = []
  for rank in range(ranks):
    seen = []
    ds = task.train_dataset(tf.distribute.InputContext(ranks, rank)).unbatch().take(total + 1)
    for example in ds.as_numpy_iterator():
      key = identify(example)
      if key in seen:
        break
      seen.append(key)
    passes.append(seen)
  return passes


def _assert_partition(passes, everything):
  for a in range(len(passes)):
    for b in range(a + 1, len(passes)):
      both = set(passes[a]) & set(passes[b])
      assert not both, f"ranks {a} and {b} both train on {sorted(both)[:3]}"
  assert set().union(*passes) == set(everything), "some training examples are on no rank's shard"
  assert sum(len(p) for p in passes) == len(everything), [len(p) for p in passes]


@pytest.mark.parametrize("ranks", [2, 3])
def test_resnet_train_shards_split_the_train_set(colour_imagenet, ranks, trainer_factory):
  task = _resnet_task(colour_imagenet, "--global_batch_size=1")
  want = _read_imagenet(_record_files(colour_imagenet, "train"))
  assert len(set(want)) == len(want) == sum(TRAIN_SHARDS)
  _assert_partition(_first_passes(task, ranks, lambda e: _colour_index(e["image"]), len(want)), want)


@pytest.mark.parametrize("ranks", [2, 3])
def test_bert_train_shards_split_the_train_set(demo_bert, ranks, trainer_factory):
  task = _bert_task(demo_bert, "--global_batch_size=8")
  want = _read_bert(sorted(task.train_files))
  assert len(set(want)) == len(want), "the demo train set repeats an example: identities would be ambiguous"
  _assert_partition(_first_passes(task, ranks, _bert_key, len(want)), want)


def test_duplicated_eval_example_stops_the_run(colour_imagenet, tmp_path, trainer_factory):
  """One eval example stored twice: before the run the shard's size no longer matches its manifest and the
  inputs check refuses it; if the data changes under a running trainer, the eval count no longer matches and the
  trainer raises instead of reporting an accuracy."""
  data = str(tmp_path / "data")
  shutil.copytree(colour_imagenet, data)
  shard = _record_files(data, "validation")[0]
  original = open(shard, "rb").read()
  first = next(tf.data.TFRecordDataset(shard).as_numpy_iterator())
  # A TFRecord file is a run of framed records (8-byte length, 4-byte CRC, data, 4-byte CRC): appending the
  # first frame stores its example a second time.
  duplicated = original + original[:16 + len(first)]
  open(shard, "wb").write(duplicated)
  assert collections.Counter(_read_imagenet([shard])).most_common(1)[0][1] == 2
  with pytest.raises(InputError, match="bytes"):
    _resnet_task(data)

  open(shard, "wb").write(original)
  trainer = build_trainer("resnet", *RESNET_FLAGS, f"--data_dir={data}", "--noxla", "--eval_batch_size=4")
  open(shard, "wb").write(duplicated)
  with pytest.raises(RuntimeError, match=f"expected exactly {sum(VAL_SHARDS)}"):
    trainer.evaluate(trainer.task.plan().eval_points[0])
