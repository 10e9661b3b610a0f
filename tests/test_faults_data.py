"""Faults in the data and checkpoint inputs, each driven through the data_prep CLI (in process: the same main() that
`python -m` runs) on a small input generated here. Every case must end with exit 2 and a message naming the file
(and member) at fault, before any slow work; nothing already written is lost. Named after the case they cover."""
import hashlib
import io
import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PYTHON, ROOT
from data_prep import bert_records
from data_prep.bert_checkpoint import cli as checkpoint_cli
from data_prep.demo import imagenet as demo_imagenet
from data_prep.imagenet import cli as imagenet_cli
from data_prep.wikipedia import cli as wikipedia_cli
from tf_gp2bm.errors import EXIT_BAD_INPUT, InputError
from tf_gp2bm.formats import bert_pretraining, imagenet as imagenet_format

SEQ, PREDS = ["--max_seq_length=16", "--max_predictions_per_seq=4"], (16, 4)


def _jpeg(seed):
  out = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(out, "JPEG")
  return out.getvalue()


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _imagenet_tars(root, bad=None):
  """A train tar of two per-class tars (3 images each) and a val tar of 4, with labels; `bad`: a member name whose
  bytes are not an image."""
  root.mkdir(parents=True, exist_ok=True)
  with tarfile.open(root / "train.tar", "w") as outer:
    for synset in ("n01000001", "n01000002"):
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w") as tar:
        for i in range(3):
          name = f"{synset}_{i}.JPEG"
          _add(tar, name, b"this is a text file" if name == bad else _jpeg(i))
      _add(outer, f"{synset}.tar", inner.getvalue())
  with tarfile.open(root / "val.tar", "w") as tar:
    for i in range(1, 5):
      _add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", _jpeg(100 + i))
  (root / "labels.txt").write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG n0100000{1 + i % 2}\n" for i in range(1, 5)))
  return root


def _convert(src, out, train=None):
  return imagenet_cli.main(["convert", f"--train={train or src / 'train.tar'}", f"--val={src / 'val.tar'}",
                            f"--val_labels={src / 'labels.txt'}", f"--out={out}", "--allow_partial",
                            "--train_shards=1", "--val_shards=1", "--workers=1"])


def _imagenet_folders(root):
  """Two classes of two train images and two validation images with their labels, under `root`: (train, val,
  the arguments of a convert into root/imagenet)."""
  train, val = root / "train", root / "val"
  for synset in ("n01000001", "n01000002"):
    (train / synset).mkdir(parents=True)
    for i in range(2):
      (train / synset / f"{synset}_{i}.JPEG").write_bytes(_jpeg(i))
  val.mkdir()
  for i in (1, 2):
    (val / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(_jpeg(10 + i))
  (root / "labels.txt").write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG n0100000{i}\n" for i in (1, 2)))
  args = ["convert", f"--train={train}", f"--val={val}", f"--val_labels={root / 'labels.txt'}",
          f"--out={root / 'imagenet'}", "--allow_partial", "--train_shards=1", "--val_shards=1", "--workers=1"]
  return train, val, args


def _bert_records(folder, name, examples):
  folder.mkdir(parents=True, exist_ok=True)
  bert_records.write_examples(str(folder / name), examples, *PREDS)


def _example(top_id):
  return {"input_ids": [2, 7, top_id, 3, 9, 3], "segment_ids": [0, 0, 0, 0, 1, 1], "masked_lm_positions": [2],
          "masked_lm_ids": [top_id], "next_sentence_labels": 0}


def _vocab(path, size):
  path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(size - 5)]) + "\n")
  return path


# ------------------------------------------------------------------------------------------------ empty input
@pytest.mark.parametrize("content,message", [("", "is empty (0 bytes)"),
                                             ("\n\n\n", "no pretraining examples (a part of blank lines")])
def test_empty_text_part_is_refused(tmp_path, capsys, content, message):
  text = tmp_path / "text"
  text.mkdir()
  (text / "part-00000-of-00002").write_text("A first sentence here.\nAnother one follows.\n\nNext article.\n")
  (text / "part-00001-of-00002").write_text(content)
  vocab = _vocab(tmp_path / "vocab.txt", 200)
  rc = wikipedia_cli.main(["tfrecords", f"--input={text}", f"--vocab={vocab}", f"--out={tmp_path / 'out'}",
                           *SEQ, "--workers=2"])
  assert rc == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"{text / 'part-00001-of-00002'}" in err and message in err and "Traceback" not in err
  assert not (tmp_path / "out" / "part-00001-of-00002").exists()
  assert not (tmp_path / "out" / bert_pretraining.MANIFEST).exists()


def test_record_file_without_records_is_refused(tmp_path, capsys):
  """Records made elsewhere: verify refuses a part of no records (a rank given only such parts would wait for data
  forever after run_start), and the trainer's manifest check refuses a manifest that lists one."""
  records = tmp_path / "records"
  _bert_records(records, "part-00000-of-00002", [_example(50)] * 3)
  _bert_records(records, "part-00001-of-00002", [])
  vocab = _vocab(tmp_path / "vocab.txt", 100)
  assert wikipedia_cli.main(["verify", f"--out={records}", f"--vocab={vocab}", *SEQ]) == EXIT_BAD_INPUT
  assert f"{records / 'part-00001-of-00002'}: holds no records" in capsys.readouterr().err
  assert not (records / bert_pretraining.MANIFEST).exists()
  # A manifest written by other means that lists an empty file is refused at init, naming the file.
  os.remove(records / "part-00001-of-00002")
  assert wikipedia_cli.main(["verify", f"--out={records}", f"--vocab={vocab}", *SEQ]) == 0
  manifest = json.loads((records / bert_pretraining.MANIFEST).read_text())
  _bert_records(records, "part-00001-of-00002", [])
  manifest["files"]["part-00001-of-00002"] = dict(manifest["files"]["part-00000-of-00002"], records=0,
                                                  bytes=os.path.getsize(records / "part-00001-of-00002"))
  manifest["splits"]["train"].update(files=2)
  (records / bert_pretraining.MANIFEST).write_text(json.dumps(manifest))
  with pytest.raises(InputError, match="part-00001-of-00002: holds no records"):
    bert_pretraining.read_manifest(str(records))


# ------------------------------------------------------------------------------------------- out-of-vocab ids
def test_out_of_vocab_token_ids_are_named_by_verify(tmp_path, capsys):
  records = tmp_path / "records"
  _bert_records(records, "part-00000-of-00002", [_example(40)] * 4)
  _bert_records(records, "part-00001-of-00002", [_example(40), _example(250)])
  vocab = _vocab(tmp_path / "vocab.txt", 100)
  assert wikipedia_cli.main(["verify", f"--out={records}", f"--vocab={vocab}", *SEQ]) == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"{records / 'part-00001-of-00002'}: token id 250 is outside the vocab of 100 entries" in err
  # With the vocab the records were made for, the manifest records the range; a smaller model vocab is refused
  # from the manifest alone.
  assert wikipedia_cli.main(["verify", f"--out={records}", f"--vocab={_vocab(tmp_path / 'big.txt', 300)}",
                             *SEQ]) == 0
  described = bert_pretraining.read_manifest(str(records))
  assert described.split("train").max_token_id == 250 and described.split("train").records == 6
  with pytest.raises(InputError, match=r"part-00001-of-00002: token id 250 is outside the model vocab of 128"):
    described.check_model(*PREDS, vocab_size=128)


def test_cut_record_file_fails_the_manifest_check(tmp_path):
  records = tmp_path / "records"
  _bert_records(records, "part-00000-of-00001", [_example(40)] * 5)
  assert wikipedia_cli.main(["verify", f"--out={records}", f"--vocab={_vocab(tmp_path / 'v.txt', 100)}", *SEQ]) == 0
  part = records / "part-00000-of-00001"
  part.write_bytes(part.read_bytes()[:-7])
  with pytest.raises(InputError, match=r"part-00000-of-00001: [\d,]+ bytes, .*manifest.json records"):
    bert_pretraining.read_manifest(str(records))


# ------------------------------------------------------------------------------------------------ ImageNet tars
@pytest.mark.parametrize("cut", [15000, 16500, 11000])
def test_tar_cut_mid_member_names_tar_and_member(tmp_path, capsys, cut):
  """15000: inside an image of the second class tar; 16500: inside a header of that class tar; 11000: inside
  the outer tar's second member header."""
  src = _imagenet_tars(tmp_path / "src")
  data = (src / "train.tar").read_bytes()
  cut_tar = tmp_path / "ILSVRC2012_img_train.tar"
  cut_tar.write_bytes(data[:cut])
  assert _convert(src, tmp_path / "out", train=cut_tar) == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  expected = {15000: f"{cut_tar}:n01000002.tar ends inside member n01000002_1.JPEG",
              16500: f"{cut_tar}:n01000002.tar is cut after member n01000002_1.JPEG",
              11000: f"{cut_tar} is cut after member n01000001.tar"}[cut]
  assert expected in err and "download it again" in err and "Traceback" not in err


def test_val_tar_cut_in_a_header_is_not_a_shorter_listing(tmp_path, capsys):
  src = _imagenet_tars(tmp_path / "src")
  data = (src / "val.tar").read_bytes()
  (src / "val.tar").write_bytes(data[:3000])  # inside the second member's header
  assert _convert(src, tmp_path / "out") == EXIT_BAD_INPUT
  assert f"{src / 'val.tar'} is cut after member ILSVRC2012_val_00000001.JPEG" in capsys.readouterr().err


def test_unwritable_out_is_refused_before_listing(tmp_path, capsys):
  src = _imagenet_tars(tmp_path / "src")
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  assert _convert(src, blocker / "imagenet") == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"--out={blocker / 'imagenet'}: cannot write there" in err
  assert "[list train]" not in err  # refused before the (slow, on the real tar) input listing
  vocab = _vocab(tmp_path / "vocab.txt", 100)
  (tmp_path / "part-00000-of-00001").write_text("One sentence.\nTwo sentences.\n")
  assert wikipedia_cli.main(["tfrecords", f"--input={tmp_path / 'part-00000-of-00001'}", f"--vocab={vocab}",
                             f"--out={blocker / 'records'}", *SEQ]) == EXIT_BAD_INPUT
  assert f"--out={blocker / 'records'}: cannot write there" in capsys.readouterr().err


def test_unreadable_image_message_names_the_image(tmp_path, capsys):
  src = _imagenet_tars(tmp_path / "src", bad="n01000002_2.JPEG")
  assert _convert(src, tmp_path / "out") == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"unreadable image {src / 'train.tar'}:n01000002.tar/n01000002_2.JPEG: not an image format" in err
  assert "BytesIO" not in err and "--skip_bad" in err


def test_short_validation_shard_fails_the_manifest_check(tmp_path):
  demo_imagenet.generate(str(tmp_path), num_classes=2, train_per_class=4, val_per_class=3, train_shards=2,
                         val_shards=2)
  shard = tmp_path / imagenet_format.shard_name("validation", 1, 2)
  assert imagenet_format.read_manifest(str(tmp_path)).num_examples("validation") == 6
  shard.write_bytes(shard.read_bytes()[:-100])
  with pytest.raises(InputError, match=rf"{shard}: [\d,]+ bytes, .*manifest.json records"):
    imagenet_format.read_manifest(str(tmp_path))


# ------------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  from tf_gp2bm.tasks.bert import checkpoint, model as bert_model
  folder = tmp_path_factory.mktemp("phase1")
  prefix = checkpoint.write_tf1_checkpoint(str(folder / "model.ckpt-5"),
                                           checkpoint.reference_tensors(bert_model.build_bert(bert_model.TINY)))
  (folder / "bert_config.json").write_text(json.dumps(bert_model.TINY.to_json()))
  return folder, prefix


def test_truncated_checkpoint_names_the_checkpoint(tiny_checkpoint, tmp_path, capsys):
  folder, prefix = tiny_checkpoint
  cut = tmp_path / "cut"
  cut.mkdir()
  table = {}
  for name in os.listdir(folder):
    data = (folder / name).read_bytes()
    table[name] = {"bytes": len(data), "md5": hashlib.md5(data).hexdigest()}
    (cut / name).write_bytes(data[:len(data) // 2] if name.endswith(".data-00000-of-00001") else data)
  expected = tmp_path / "expected.json"
  expected.write_text(json.dumps(table))
  cut_prefix = str(cut / os.path.basename(prefix))
  assert checkpoint_cli.main(["convert", f"--tf1_checkpoint={cut_prefix}", "--bert_config=tiny",
                              f"--out={tmp_path / 'tf2'}"]) == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"checkpoint {cut_prefix}: cannot read" in err and "cut or corrupt" in err and "Traceback" not in err
  assert checkpoint_cli.main(["verify", f"--checkpoint_dir={cut}", f"--expected={expected}"]) == EXIT_BAD_INPUT
  data_file = cut / "model.ckpt-5.data-00000-of-00001"
  assert f"{data_file}: {os.path.getsize(data_file):,} bytes, expected" in capsys.readouterr().err
  assert checkpoint_cli.main(["verify", f"--checkpoint_dir={folder}", f"--expected={expected}"]) == 0


# ---------------------------------------------------------------------------------------------- slow --help
@pytest.mark.parametrize("module", ["data_prep.imagenet", "data_prep.wikipedia", "data_prep.bert_checkpoint",
                                    "data_prep.demo.imagenet", "data_prep.demo.bert"])
def test_help_answers_without_tensorflow(module):
  probe = ("import runpy, sys\n"
           f"sys.argv = [{module!r}, '--help']\n"
           "try:\n"
           f"  runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
           "except SystemExit as e:\n"
           "  code = e.code\n"
           "print('EXIT', code, 'TF', 'tensorflow' in sys.modules)\n")
  r = subprocess.run([PYTHON, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert r.stdout.strip().endswith("EXIT 0 TF False"), r.stdout[-500:] + r.stderr[-2000:]  # no TensorFlow: fast
  assert "usage:" in r.stdout


# ------------------------------------------------------------------------- an output that aliases the input
def _loop(path):
  """A symlink that points at itself: it matches a listing or a pattern, and cannot be opened."""
  os.symlink(path.name, path)
  return path


def _snapshot(folder):
  return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _wikipedia(*args):
  return subprocess.run([PYTHON, "-m", "data_prep.wikipedia", *map(str, args)], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT)))


@pytest.mark.slow
def test_pack_out_through_a_symlink_to_its_input_is_refused(tmp_path):
  records = tmp_path / "records"
  for i in range(2):
    _bert_records(records, f"part-0000{i}-of-00002", [_example(40 + i)] * 5)
  before = _snapshot(records)
  link = tmp_path / "packed"
  link.symlink_to(records)
  r = _wikipedia("pack", f"--input={records}", f"--out={link}")
  assert r.returncode == EXIT_BAD_INPUT, r.stderr
  assert f"--out={link} and --input={records} are the same folder" in r.stderr and "Traceback" not in r.stderr
  assert _snapshot(records) == before


def test_every_writing_tool_refuses_an_out_that_aliases_its_input(tmp_path, capsys, tiny_checkpoint):
  """Through a symlink, a hard link, and folders nested either way: compared by the real folder and file."""
  records = tmp_path / "records"
  for i in range(2):
    _bert_records(records, f"part-0000{i}-of-00002", [_example(40 + i)] * 5)
  before = _snapshot(records)
  (tmp_path / "link").symlink_to(records)
  hard = tmp_path / "hard"
  hard.mkdir()
  os.link(records / "part-00000-of-00002", hard / "part-00000-of-00002")
  pack_cases = {tmp_path / "link": "are the same folder", records / "packed": "--out is inside the input folder",
                tmp_path: "the input is inside --out", hard: "(a hard link)"}
  for out, message in pack_cases.items():
    assert wikipedia_cli.main(["pack", f"--input={records}", f"--out={out}"]) == EXIT_BAD_INPUT, out
    assert message in capsys.readouterr().err, out
  assert _snapshot(records) == before and not (records / "packed").exists()
  # tfrecords: text parts and records of the same names; writing next to the parts would overwrite them.
  text = tmp_path / "text"
  text.mkdir()
  (text / "part-00000-of-00001").write_text("A first sentence here.\nAnother one follows.\n\nNext article.\n")
  (tmp_path / "text_link").symlink_to(text)
  vocab = _vocab(tmp_path / "vocab.txt", 200)
  before = _snapshot(text)
  assert wikipedia_cli.main(["tfrecords", f"--input={text}", f"--vocab={vocab}", f"--out={tmp_path / 'text_link'}",
                             *SEQ]) == EXIT_BAD_INPUT
  assert "the input is inside --out" in capsys.readouterr().err and _snapshot(text) == before
  assert wikipedia_cli.main(["clean", f"--input={text}", f"--out={tmp_path / 'text_link'}"]) == EXIT_BAD_INPUT
  assert "are the same folder" in capsys.readouterr().err and _snapshot(text) == before
  # convert: --out the folder holding the tars.
  src = _imagenet_tars(tmp_path / "src")
  assert _convert(src, src) == EXIT_BAD_INPUT
  assert f"--out={src} and --train={src / 'train.tar'}: the input is inside --out" in capsys.readouterr().err
  assert not (src / "manifest.json").exists()
  # bert_checkpoint convert: --out the checkpoint's folder (by a symlink), or holding a hard link to its config.
  folder, prefix = tiny_checkpoint
  before = _snapshot(folder)
  (tmp_path / "ckpt_link").symlink_to(folder)
  linked = tmp_path / "converted"
  linked.mkdir()
  os.link(folder / "bert_config.json", linked / "bert_config.json")
  for out, message in ((tmp_path / "ckpt_link", "the input is inside --out"), (linked, "(a hard link)")):
    assert checkpoint_cli.main(["convert", f"--tf1_checkpoint={prefix}", f"--bert_config={folder / 'bert_config.json'}",
                                f"--out={out}"]) == EXIT_BAD_INPUT, out
    assert message in capsys.readouterr().err, out
  assert _snapshot(folder) == before and sorted(os.listdir(linked)) == ["bert_config.json"]


# -------------------------------------------------------------------- inputs that cannot be read: named, not skipped
@pytest.mark.slow
def test_pack_names_an_input_it_cannot_read(tmp_path):
  records = tmp_path / "records"
  for i in range(2):
    _bert_records(records, f"part-0000{i}-of-00003", [_example(40 + i)] * 5)
  loop = _loop(records / "part-00002-of-00003")
  r = _wikipedia("pack", f"--input={records}", f"--out={tmp_path / 'packed'}")
  assert r.returncode == EXIT_BAD_INPUT, r.stderr
  assert f"--input: {loop} is a symlink that leads nowhere readable" in r.stderr and "Traceback" not in r.stderr
  assert not (tmp_path / "packed" / "manifest-pack.json").exists()


def test_every_tool_names_an_input_it_cannot_read(tmp_path, capsys, tiny_checkpoint):
  """A symlink loop or a dangling link in a folder or matching a pattern is exit 2 naming it (a file without read
  permission too, where the tests do not run as root, for whom every file is readable)."""
  records = tmp_path / "records"
  _bert_records(records, "part-00000-of-00002", [_example(40)] * 5)
  dangling = records / "part-00001-of-00002"
  dangling.symlink_to(tmp_path / "gone")
  assert wikipedia_cli.main(["pack", f"--input={records}/part-*", f"--out={tmp_path / 'p'}"]) == EXIT_BAD_INPUT
  assert f"{dangling} is a symlink that leads nowhere readable" in capsys.readouterr().err
  text = tmp_path / "text"
  text.mkdir()
  (text / "part-00000-of-00002").write_text("A first sentence here.\nAnother one follows.\n\nNext article.\n")
  loop = _loop(text / "part-00001-of-00002")
  vocab = _vocab(tmp_path / "vocab.txt", 200)
  assert wikipedia_cli.main(["tfrecords", f"--input={text}", f"--vocab={vocab}", f"--out={tmp_path / 't'}",
                             *SEQ]) == EXIT_BAD_INPUT
  assert f"{loop} is a symlink that leads nowhere readable" in capsys.readouterr().err
  # convert from folders: a loop among a class's images, among the validation images.
  train, val, args = _imagenet_folders(tmp_path)
  bad_image = _loop(train / "n01000002" / "n01000002_9.JPEG")
  assert imagenet_cli.main(args) == EXIT_BAD_INPUT
  assert f"--train: {bad_image} is a symlink that leads nowhere readable" in capsys.readouterr().err
  os.remove(bad_image)
  bad_image = _loop(val / "ILSVRC2012_val_00000003.JPEG")
  assert imagenet_cli.main(args) == EXIT_BAD_INPUT
  assert f"--val: {bad_image} is a symlink that leads nowhere readable" in capsys.readouterr().err
  os.remove(bad_image)
  # bert_checkpoint convert: the checkpoint's data file is a symlink loop.
  folder, prefix = tiny_checkpoint
  copy = tmp_path / "ckpt"
  shutil.copytree(folder, copy)
  data_file = copy / f"{os.path.basename(prefix)}.data-00000-of-00001"
  os.remove(data_file)
  _loop(data_file)
  assert checkpoint_cli.main(["convert", f"--tf1_checkpoint={copy / os.path.basename(prefix)}", "--bert_config=tiny",
                              f"--out={tmp_path / 'tf2'}"]) == EXIT_BAD_INPUT
  assert f"--tf1_checkpoint: {data_file} is a symlink that leads nowhere readable" in capsys.readouterr().err
  if os.geteuid() != 0:
    unreadable = train / "n01000001" / "n01000001_0.JPEG"
    unreadable.chmod(0)
    assert imagenet_cli.main(args) == EXIT_BAD_INPUT
    assert f"--train: cannot read {unreadable} (permission denied)" in capsys.readouterr().err
    unreadable.chmod(0o644)
  assert imagenet_cli.main(args) == 0


@pytest.mark.slow
def test_verify_names_a_shard_that_is_a_symlink_loop(tmp_path):
  demo_imagenet.generate(str(tmp_path), num_classes=2, train_per_class=4, val_per_class=2, train_shards=2,
                         val_shards=1)
  shard = tmp_path / imagenet_format.shard_name("train", 1, 2)
  os.remove(shard)
  _loop(shard)
  r = subprocess.run([PYTHON, "-m", "data_prep.imagenet", "verify", str(tmp_path)], cwd=ROOT, capture_output=True,
                     text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT)))
  assert r.returncode == EXIT_BAD_INPUT, r.stdout + r.stderr
  assert f"FAIL verify: {shard} is a symlink that leads nowhere readable" in r.stdout, r.stdout
  assert "Traceback" not in r.stdout + r.stderr


# ------------------------------------------------------------------------- a second writer into the same --out
def test_every_writing_tool_refuses_a_second_writer_into_its_out(tmp_path, capsys, tiny_checkpoint):
  """While one run holds an output folder (its lock, as a running tool holds it), a second run of any writing tool
  into that folder is exit 2 naming the folder and the holder, and writes nothing there."""
  from tf_gp2bm.driver.lock import ResultsLock
  records = tmp_path / "records"
  for i in range(2):
    _bert_records(records, f"part-0000{i}-of-00002", [_example(40 + i)] * 5)
  text = tmp_path / "text"
  text.mkdir()
  (text / "part-00000-of-00001").write_text("A first sentence here.\nAnother one follows.\n\nNext article.\n")
  (text / "eval.txt").write_text("An eval sentence.\nAnd one more.\n\nA second article.\n")
  vocab = _vocab(tmp_path / "vocab.txt", 200)
  folder, prefix = tiny_checkpoint
  src = _imagenet_tars(tmp_path / "src")
  cases = {
      "wikipedia pack": lambda out: wikipedia_cli.main(["pack", f"--input={records}", f"--out={out}"]),
      "wikipedia tfrecords": lambda out: wikipedia_cli.main(["tfrecords", f"--input={text}", f"--vocab={vocab}",
                                                             f"--out={out}", *SEQ]),
      "wikipedia eval": lambda out: wikipedia_cli.main(["eval", f"--input={text}", f"--vocab={vocab}",
                                                        f"--out={out}", *SEQ]),
      "wikipedia all": lambda out: wikipedia_cli.main(["all", f"--published_text={text}", f"--vocab={vocab}",
                                                       f"--work={out}", *SEQ]),
      "bert_checkpoint convert": lambda out: checkpoint_cli.main(["convert", f"--tf1_checkpoint={prefix}",
                                                                  "--bert_config=tiny", f"--out={out}"]),
      "imagenet convert": lambda out: _convert(src, out),
  }
  for tool, run in cases.items():
    out = tmp_path / tool.replace(" ", "_")
    flag = "--work" if tool == "wikipedia all" else "--out"
    with ResultsLock(str(out), command=f"python -m data_prep.{tool}"):
      assert run(out) == EXIT_BAD_INPUT, tool
    err = capsys.readouterr().err
    assert (f"{flag}={out}: the output folder {out} is in use by another `{tool.split()[-1]}`: pid {os.getpid()} "
            in err), (tool, err)
    assert os.listdir(out) == [".gp2bm.lock"], tool  # the refused run wrote nothing
    run(out)  # once the folder is free, the same command is not refused for it (`all` then checks its text)
    assert "in use by another" not in capsys.readouterr().err, tool


# -------------------------------------------------------------- a listed file that cannot be read: not "missing"
def test_a_listed_shard_that_cannot_be_read_is_named_not_missing(tmp_path, capsys):
  """The record formats' manifest check: a shard a manifest lists that is a symlink loop is named as one."""
  demo_imagenet.generate(str(tmp_path / "in"), num_classes=2, train_per_class=4, val_per_class=2, train_shards=2,
                         val_shards=1, restart_markers=False)
  shard = tmp_path / "in" / imagenet_format.shard_name("train", 1, 2)
  os.remove(shard)
  _loop(shard)
  assert imagenet_cli.main(["restart", f"--input={tmp_path / 'in'}", f"--out={tmp_path / 'out'}"]) == EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert f"{shard} is a symlink that leads nowhere readable (Too many levels of symbolic links)" in err, err
  assert "missing" not in err
  os.remove(shard)
  shard.mkdir()
  assert imagenet_cli.main(["restart", f"--input={tmp_path / 'in'}", f"--out={tmp_path / 'out'}"]) == EXIT_BAD_INPUT
  assert f"{shard}: a folder, not a file" in capsys.readouterr().err


# ------------------------------------------------------- a file without read permission, for an unprivileged user
NOBODY = 65534


def _as_nobody(*argv):
  """argv run as the unprivileged user `nobody` (uid/gid 65534, no groups) with this interpreter's version and
  packages. The interpreter itself may sit under a folder that user cannot enter (a root-only home), so the
  system's python of the same version is used, with this one's site-packages on the path."""
  version = f"python{sys.version_info.major}.{sys.version_info.minor}"
  python = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
  env = {"PATH": "/usr/bin:/bin", "HOME": "/", "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
         "PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()])}
  command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python or version, *argv]
  return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _nobody_can_run_the_tools():
  if os.geteuid() != 0 or not shutil.which("setpriv"):
    return "needs root and setpriv to run the tools as another user"
  probe = _as_nobody("-c", "import numpy, PIL, data_prep.wikipedia.cli, data_prep.imagenet.cli")
  return None if probe.returncode == 0 else f"`nobody` cannot run the tools here: {probe.stderr[-300:]}"


def test_a_file_without_read_permission_is_named_for_an_unprivileged_user():
  """check_readable's permission branch, which never runs as root (root reads every file): pack and imagenet
  convert, run as `nobody` over a folder it owns where one input file has mode 000, are exit 2 naming that file."""
  reason = _nobody_can_run_the_tools()
  if reason:
    pytest.skip(reason)
  root = tempfile.mkdtemp(prefix="unreadable-")  # not under pytest's root-only tmp folder
  try:
    folder = Path(root)
    records = folder / "records"
    for i in range(2):
      _bert_records(records, f"part-0000{i}-of-00002", [_example(40 + i)] * 5)
    train, val, args = _imagenet_folders(folder)
    for path in [folder, *folder.rglob("*")]:
      os.chown(path, NOBODY, NOBODY)
    os.chmod(folder, 0o755)
    unreadable_part = records / "part-00001-of-00002"
    unreadable_image = train / "n01000002" / "n01000002_1.JPEG"
    for path in (unreadable_part, unreadable_image):
      path.chmod(0)
    r = _as_nobody("-m", "data_prep.wikipedia", "pack", f"--input={records}", f"--out={folder / 'packed'}")
    assert r.returncode == EXIT_BAD_INPUT, r.stdout + r.stderr
    assert f"--input: cannot read {unreadable_part} (permission denied)" in r.stderr and "Traceback" not in r.stderr
    assert not (folder / "packed" / "manifest-pack.json").exists()
    r = _as_nobody("-m", "data_prep.imagenet", *args, "--no_restart_markers")
    assert r.returncode == EXIT_BAD_INPUT, r.stdout + r.stderr
    assert f"--train: cannot read {unreadable_image} (permission denied)" in r.stderr and "Traceback" not in r.stderr
    assert not (folder / "imagenet" / imagenet_format.MANIFEST).exists()
  finally:
    shutil.rmtree(root)
