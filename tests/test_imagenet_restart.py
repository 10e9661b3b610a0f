"""`data_prep.imagenet restart`: a record set made without restart markers gets them, losslessly, with every other
feature, the validation shards and the manifest's facts kept; reruns resume; bad folders are refused by name."""
import os

import numpy as np
import pytest
import tensorflow as tf

from data_prep.demo import imagenet as demo_imagenet
from data_prep.imagenet import cli
from tf_gp2bm import files
from tf_gp2bm.errors import EXIT_BAD_INPUT
from tf_gp2bm.formats import imagenet as imagenet_records
from tf_gp2bm.tasks.resnet import jpeg_op


def _examples(path):
  return [tf.train.Example.FromString(r) for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
  folder = tmp_path_factory.mktemp("plain")
  demo_imagenet.generate(str(folder), num_classes=3, train_per_class=8, val_per_class=2, train_shards=2,
                         val_shards=1, restart_markers=False)
  return folder


def test_restart_rewrites_train_jpegs_and_keeps_everything_else(plain, tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["restart", f"--input={plain}", f"--out={out}", "--workers=1"]) == 0
  assert "24 JPEGs rewritten with restart markers, 0 kept" in capsys.readouterr().out
  manifest = imagenet_records.read_manifest(str(out))  # sizes match the files written
  assert manifest.raw["restart_markers"] == {"rewritten": 24, "kept": 0}
  assert manifest.raw["options"]["restart_markers"] is True
  source = files.read_json(plain / imagenet_records.MANIFEST)
  assert manifest.raw["class_counts"] == source["class_counts"] and manifest.raw["synsets"] == source["synsets"]
  for shard in manifest.splits["train"]:
    for before, after in zip(_examples(plain / os.path.basename(shard.path)), _examples(shard.path), strict=True):
      old, new = (e.features.feature["image/encoded"].bytes_list.value[0] for e in (before, after))
      assert old != new and jpeg_op.restart_every_mcu(new) == (new, True)
      assert np.array_equal(tf.io.decode_jpeg(old, channels=3), tf.io.decode_jpeg(new, channels=3))
      for key in before.features.feature:
        if key != "image/encoded":
          assert before.features.feature[key] == after.features.feature[key], key
  for shard in manifest.splits["validation"]:
    assert open(shard.path, "rb").read() == (plain / os.path.basename(shard.path)).read_bytes()
  # A rerun finds every shard done and writes the same manifest.
  assert cli.main(["restart", f"--input={plain}", f"--out={out}", "--workers=1"]) == 0
  assert "resuming: 3 shards already written" in capsys.readouterr().err
  assert files.read_json(out / imagenet_records.MANIFEST) == manifest.raw


def test_restart_refuses_folders_it_must_not_write(plain, tmp_path, capsys):
  assert cli.main(["restart", f"--input={plain}", f"--out={plain}"]) == EXIT_BAD_INPUT
  assert f"--out={plain} is --input" in capsys.readouterr().err
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("someone's files")
  assert cli.main(["restart", f"--input={plain}", f"--out={foreign}"]) == EXIT_BAD_INPUT
  assert f"--out={foreign} is not empty" in capsys.readouterr().err
  assert (foreign / "notes.txt").read_text() == "someone's files"
  assert cli.main(["restart", f"--input={tmp_path / 'nothing'}", f"--out={tmp_path / 'o'}"]) == EXIT_BAD_INPUT
  assert "manifest" in capsys.readouterr().err
