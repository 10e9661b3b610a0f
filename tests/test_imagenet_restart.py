"""`data_prep.imagenet restart`: a record set made without restart markers gets them, losslessly, with every other
feature, the validation shards and the manifest's facts kept; reruns resume, from the same input only; bad folders,
a second writer and JPEGs that do not decode are refused by name."""
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from data_prep.demo import imagenet as demo_imagenet
from data_prep.imagenet import cli, restart, verify
from conftest import PYTHON, ROOT
from tf_gp2bm import files
from tf_gp2bm.driver.lock import ResultsLock
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
  assert f"--out={plain} and --input={plain} are the same folder" in capsys.readouterr().err
  # The same folder through a symlink, a folder inside the input, and the input inside --out: all refused, the
  # input untouched (compared by real folder, not by path).
  before = {p.name: p.read_bytes() for p in plain.iterdir() if p.is_file()}
  link = tmp_path / "link"
  link.symlink_to(plain)
  cases = {link: "are the same folder", plain / "inside": "--out is inside the input folder",
           plain.parent: "the input is inside --out"}
  for out, message in cases.items():
    assert cli.main(["restart", f"--input={plain}", f"--out={out}"]) == EXIT_BAD_INPUT, out
    assert message in capsys.readouterr().err, out
  assert {p.name: p.read_bytes() for p in plain.iterdir() if p.is_file()} == before
  assert not (plain / "inside").exists() and not (plain / restart.PARTS_DIR).exists()
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("someone's files")
  assert cli.main(["restart", f"--input={plain}", f"--out={foreign}"]) == EXIT_BAD_INPUT
  assert f"--out={foreign} is not empty" in capsys.readouterr().err
  assert (foreign / "notes.txt").read_text() == "someone's files"
  assert cli.main(["restart", f"--input={tmp_path / 'nothing'}", f"--out={tmp_path / 'o'}"]) == EXIT_BAD_INPUT
  assert "manifest" in capsys.readouterr().err


def _restart_cli(*args):
  return subprocess.Popen([PYTHON, "-m", "data_prep.imagenet", "restart", *map(str, args)], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT)))


def _temps(folder):
  return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if files.TMP_SUFFIX + "." in n]


def _wait_mid_shard(process, out):
  """Until one train shard is finished and the next one's temporary file is open."""
  deadline = time.monotonic() + 120
  while not (os.path.isdir(out / restart.PARTS_DIR) and _temps(out)
             and any(n.endswith("-of-00006.json") for n in os.listdir(out / restart.PARTS_DIR))):
    assert process.poll() is None and time.monotonic() < deadline, process.communicate()
    time.sleep(0.002)


@pytest.mark.slow
def test_stopped_restart_resumes_only_from_its_own_input_and_leaves_no_temporary_file(tmp_path):
  inputs = {}
  for seed in (0, 1):  # two record sets of the same layout and counts, other images
    inputs[seed] = tmp_path / f"input{seed}"
    demo_imagenet.generate(str(inputs[seed]), num_classes=3, train_per_class=30, val_per_class=2, train_shards=6,
                           val_shards=1, seed=seed, photo_like=True, restart_markers=False)
  out = tmp_path / "out"
  # SIGTERM mid-shard: the run ends at once (143), its temporary shard removed.
  stopped = _restart_cli(f"--input={inputs[0]}", f"--out={tmp_path / 'stopped'}", "--workers=1")
  _wait_mid_shard(stopped, tmp_path / "stopped")
  stopped.send_signal(signal.SIGTERM)
  _, err = stopped.communicate(timeout=60)
  assert stopped.returncode == 143 and "terminated by SIGTERM" in err, err
  assert _temps(tmp_path / "stopped") == []
  # SIGKILL mid-shard leaves the temporary shard to the rerun.
  first = _restart_cli(f"--input={inputs[0]}", f"--out={out}", "--workers=1")
  _wait_mid_shard(first, out)
  first.send_signal(signal.SIGKILL)
  first.communicate()
  assert _temps(out)
  other = _restart_cli(f"--input={inputs[1]}", f"--out={out}", "--workers=1")
  _, err = other.communicate(timeout=300)
  assert other.returncode == EXIT_BAD_INPUT, err
  assert f"--out={out} holds a partial restart of another input ({inputs[0]}" in err and "Traceback" not in err
  again = _restart_cli(f"--input={inputs[0]}", f"--out={out}", "--workers=1")
  _, err = again.communicate(timeout=300)
  assert again.returncode == 0 and "resuming: " in err, err
  assert _temps(out) == [] and verify.verify(str(out)) == []
  assert files.read_json(out / imagenet_records.MANIFEST)["restarted_from"] == str(inputs[0])


def test_a_second_restart_into_the_same_folder_is_refused(plain, tmp_path, capsys):
  out = tmp_path / "out"
  (out / restart.PARTS_DIR).mkdir(parents=True)
  with ResultsLock(str(out), command="python -m data_prep.imagenet restart"):  # what a running restart holds
    assert cli.main(["restart", f"--input={plain}", f"--out={out}", "--workers=1"]) == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"--out={out}: the output folder {out} is in use by another `restart`: pid {os.getpid()}" in err
  assert sorted(os.listdir(out / restart.PARTS_DIR)) == []  # nothing written by the refused one


def _with_bad_jpeg(source, folder, shard_name, index):
  """A copy of the record set `source` whose record `index` of `shard_name` holds a cut-off JPEG (the manifest
  updated to match, as a converter that did not check would have written it); returns the image's name."""
  shutil.copytree(source, folder)
  path = folder / shard_name
  examples = _examples(path)
  encoded = examples[index].features.feature["image/encoded"].bytes_list
  encoded.value[0] = encoded.value[0][:len(encoded.value[0]) // 2]
  with tf.io.TFRecordWriter(str(path)) as writer:
    for example in examples:
      writer.write(example.SerializeToString(deterministic=True))
  manifest = files.read_json(folder / imagenet_records.MANIFEST)
  split = "train" if shard_name.startswith("train") else "validation"
  manifest["splits"][split]["shards"][shard_name].update(bytes=os.path.getsize(path), sha256=files.sha256_file(path))
  files.write_json_atomic(folder / imagenet_records.MANIFEST, manifest)
  return examples[index].features.feature["image/filename"].bytes_list.value[0].decode()


@pytest.mark.parametrize("shard_name", ["train-00001-of-00002", "validation-00000-of-00001"])
def test_a_jpeg_that_does_not_decode_is_named_not_kept(plain, tmp_path, capsys, shard_name):
  bad = tmp_path / "bad"
  image = _with_bad_jpeg(plain, bad, shard_name, 3)
  out = tmp_path / "out"
  assert cli.main(["restart", f"--input={bad}", f"--out={out}", "--workers=1"]) == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"{bad / shard_name} record 3 (image {image}): the JPEG does not decode" in err, err
  assert not (out / shard_name).exists() and not (out / imagenet_records.MANIFEST).exists() and _temps(out) == []
  # verify names the same record and image
  assert cli.main(["verify", str(bad), "--workers=1"]) == EXIT_BAD_INPUT
  assert f"{bad / shard_name} record 3 (image {image}): JPEG does not decode" in capsys.readouterr().out


def test_skip_bad_leaves_out_counts_and_lists_the_records_that_do_not_decode(plain, tmp_path, capsys):
  """--skip_bad, as convert's: the record is left out, counted, and listed in the manifest; the rest is kept, and the
  manifest's counts add up (verify reads every record against them)."""
  bad = tmp_path / "bad"
  train_image = _with_bad_jpeg(plain, bad, "train-00001-of-00002", 3)
  shutil.rmtree(tmp_path / "bad_val", ignore_errors=True)
  val_image = _with_bad_jpeg(bad, tmp_path / "bad_val", "validation-00000-of-00001", 1)
  source = tmp_path / "bad_val"
  out = tmp_path / "out"
  assert cli.main(["restart", f"--input={source}", f"--out={out}", "--workers=1", "--skip_bad"]) == 0
  assert "2 records left out, their JPEG does not decode (--skip_bad)" in capsys.readouterr().out
  manifest = files.read_json(out / imagenet_records.MANIFEST)
  listed = {(s["split"], s["file"], s["shard"], s["record"]) for s in manifest["skipped"]}
  assert listed == {("train", train_image, "train-00001-of-00002", 3),
                    ("validation", val_image, "validation-00000-of-00001", 1)}
  assert manifest["options"]["skip_bad"] and manifest["restart_skipped"] == 2
  before = files.read_json(source / imagenet_records.MANIFEST)
  for split in ("train", "validation"):
    assert manifest["splits"][split]["num_examples"] == before["splits"][split]["num_examples"] - 1
  assert len(_examples(out / "train-00001-of-00002")) == len(_examples(source / "train-00001-of-00002")) - 1
  assert verify.verify(str(out)) == []  # counts, class counts, sizes and every JPEG agree with the manifest
  # Without the flag (the default) the same input is refused, naming the record; a folder that left records out
  # is not resumed by a run without --skip_bad.
  assert cli.main(["restart", f"--input={source}", f"--out={tmp_path / 'strict'}", "--workers=1"]) == EXIT_BAD_INPUT
  assert "record 3 (image " in capsys.readouterr().err
  assert cli.main(["restart", f"--input={source}", f"--out={out}", "--workers=1"]) == EXIT_BAD_INPUT
  assert "pass --skip_bad to leave its record out" in capsys.readouterr().err
