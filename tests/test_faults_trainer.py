"""Faults and bad input driven through the real trainer CLI (`python -m tf_gp2bm.train`), one test per case.

The promise: every flag error exits 2 before anything is written; a run that ends early for any reason (NaN/Inf
guard, SIGTERM) closes mlperf.log with `run_stop aborted` and writes run.json saying how far it got.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, ROOT, mounted_tmpfs, run_train

SMOKE = ["--task=resnet", "--flagfile=flags/resnet/smoke.flags"]


def _mllog(path):
  return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in path.read_text().splitlines() if ":::MLLOG" in line]


def _flag_error(tmp_path, *args):
  out = tmp_path / "run"
  r = run_train(*args, f"--output_dir={out}", timeout=120)
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
  assert not (out / "mlperf.log").exists()  # rejected before the run's log exists
  return r.stderr


# --- flag errors: exit 2, a message naming the flag, nothing written ---------------------------------------
def test_unknown_flag_exits_2(tmp_path):
  assert "Unknown command line flag 'learning_rat'" in _flag_error(tmp_path, *SMOKE, "--learning_rat=0.1")


def test_flag_of_the_wrong_type_exits_2(tmp_path):
  assert "--global_batch_size=big" in _flag_error(tmp_path, *SMOKE, "--global_batch_size=big")


def test_unknown_task_exits_2(tmp_path):
  assert "--task=foo" in _flag_error(tmp_path, "--task=foo")


def test_missing_flagfile_exits_2(tmp_path):
  missing = tmp_path / "typo.flags"
  assert f"Unable to open flagfile: [Errno 2] No such file or directory: '{missing}'" in _flag_error(
      tmp_path, "--task=resnet", f"--flagfile={missing}")


def test_out_of_range_flag_exits_2(tmp_path):
  assert "--steps_per_loop=0" in _flag_error(tmp_path, *SMOKE, "--steps_per_loop=0")


def test_malformed_profile_steps_exits_2(tmp_path):
  assert "--profile_steps=9,3" in _flag_error(tmp_path, *SMOKE, "--profile_steps=9,3")


def test_stray_positional_argument_exits_2(tmp_path):
  assert "unexpected argument(s) 'resnet'" in _flag_error(tmp_path, *SMOKE, "resnet")


def test_missing_output_dir_exits_2():
  r = run_train(*SMOKE, timeout=120)
  assert r.returncode == 2 and "--output_dir is required" in r.stderr


def test_output_dir_that_is_a_file_exits_2(tmp_path):
  in_the_way = tmp_path / "run"
  in_the_way.write_text("not a directory")
  r = run_train(*SMOKE, f"--output_dir={in_the_way}", timeout=120)
  assert r.returncode == 2 and f"--output_dir={in_the_way}: exists and is not a directory" in r.stderr
  assert in_the_way.read_text() == "not a directory"


# --- runs that end early ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_nan_abort_at_step_18_records_the_samples_trained(demo_imagenet, tmp_path):
  out = tmp_path / "run"
  # A learning rate this large overflows the weights within the first loop of 18 steps (steps_per_loop=18).
  r = run_train(*SMOKE, f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--seed=3",
                "--base_learning_rate=1e30")
  assert r.returncode == 4, r.stdout[-3000:] + r.stderr[-3000:]
  summary = json.loads((out / "run.json").read_text())
  assert summary["status"] == "aborted" and summary["exit_code"] == 4
  assert "non-finite loss or gradients at step 18" in summary["reason"]
  assert summary["samples_trained"] == 18 * 64  # global batch 64 in the smoke flagfile
  events = _mllog(out / "mlperf.log")
  assert events[-1]["key"] == "run_stop" and events[-1]["metadata"]["status"] == "aborted"


def _start_train(*args):
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
  return subprocess.Popen([PYTHON, "-m", "tf_gp2bm.train", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _wait_for_key(proc, log_path, key, timeout=600):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {key}: {proc.stdout.read()[-3000:]}"
    if log_path.exists() and f'"key": "{key}"' in log_path.read_text():
      return
    time.sleep(0.5)
  proc.kill()
  pytest.fail(f"no {key} in {log_path} after {timeout}s")


def _terminate(proc):
  proc.send_signal(signal.SIGTERM)
  try:
    output, _ = proc.communicate(timeout=180)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  return output


@pytest.mark.slow
def test_sigterm_during_training_ends_the_run_as_aborted(demo_imagenet, tmp_path):
  out = tmp_path / "run"
  proc = _start_train(*SMOKE, f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--seed=5",
                      "--steps_per_loop=2")
  _wait_for_key(proc, out / "mlperf.log", "block_start")
  time.sleep(3)  # a few loops into the block
  output = _terminate(proc)
  assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
  events = _mllog(out / "mlperf.log")
  assert events[-1]["key"] == "run_stop" and events[-1]["metadata"]["status"] == "aborted"
  summary = json.loads((out / "run.json").read_text())
  assert summary["status"] == "aborted" and summary["exit_code"] == 143
  assert summary["reason"] == "terminated by SIGTERM"
  assert summary["samples_trained"] > 0 and summary["samples_trained"] % 64 == 0
  assert "Traceback" not in output


@pytest.mark.slow
def test_sigterm_during_init_writes_run_json(demo_imagenet, tmp_path):
  out = tmp_path / "run"
  proc = _start_train(*SMOKE, f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--seed=6")
  _wait_for_key(proc, out / "mlperf.log", "init_start")
  output = _terminate(proc)
  assert proc.returncode == 143, output[-3000:]
  events = _mllog(out / "mlperf.log")
  assert "run_start" not in [e["key"] for e in events]  # the clock never started: nothing to stop
  summary = json.loads((out / "run.json").read_text())
  assert summary["status"] == "aborted" and summary["exit_code"] == 143 and summary["samples_trained"] == 0


# --- vendor kernel modules whose hot spot raises: bad --kernels input, not a crash ------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("plugin,message", [
    ("raises_when_called", "--kernels=kernel_plugins.raises_when_called: hot spot batch_norm raised RuntimeError: "
                           "acme_bn: no kernel for input of rank 4"),
    ("raises_when_traced", "--kernels=kernel_plugins.raises_when_traced: hot spot lars_apply raised "
                           "NotImplementedError: acme_lars: graph mode is not supported"),
])
def test_a_kernel_that_raises_is_bad_input_naming_the_module(demo_imagenet, tmp_path, plugin, message):
  out = tmp_path / "run"
  r = run_train(*SMOKE, f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--seed=3",
                f"--kernels=kernel_plugins.{plugin}", "--xla=false", timeout=600)
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
  assert message in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
  summary = json.loads((out / "run.json").read_text())
  assert summary["exit_code"] == 2 and message in summary["reason"]


# --- everything the run writes is checked before it starts: exit 2 naming the path ------------------------------
def _path_error(out, data_dir="/nonexistent-data"):
  r = run_train(*SMOKE, f"--data_dir={data_dir}", f"--output_dir={out}", timeout=300)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-3000:]
  return r.stderr


@pytest.mark.slow
def test_tensorboard_folder_that_is_a_file_exits_2(demo_imagenet, tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / "tensorboard").write_text("in the way")
  err = _path_error(out, demo_imagenet)  # good data: nothing else stops the run before TensorBoard's folder
  assert f"--output_dir={out}: {out / 'tensorboard'}: exists and is not a directory" in err, err[-2000:]
  assert (out / "tensorboard").read_text() == "in the way"
  assert not (out / "mlperf.log").exists()  # refused before init_start
  assert json.loads((out / "run.json").read_text())["exit_code"] == 2


def _deep_folder(root, length):
  """A folder path of about `length` bytes made of 200-byte names (each within the usual 255-byte name limit)."""
  path = str(root)
  while len(path) < length - 1:
    path = os.path.join(path, "d" * min(200, length - len(path) - 1))
  return path


@pytest.mark.parametrize("length", [4070, 4200])  # the run's own files past PATH_MAX; the folder itself past it
def test_output_dir_past_the_path_limit_exits_2(tmp_path, length):
  out = _deep_folder(tmp_path, length)
  err = _path_error(out)
  assert "the path is too long" in err and "this file system allows" in err, err[-2000:]


def test_output_dir_name_past_the_name_limit_exits_2(tmp_path):
  out = tmp_path / ("x" * 300)
  err = _path_error(out)
  assert f"--output_dir={out}: the name xxxx" in err and "is too long" in err, err[-2000:]


def test_output_dir_on_a_read_only_file_system_exits_2(tmp_path):
  with mounted_tmpfs(tmp_path / "ro", read_only=True) as ro:
    err = _path_error(ro / "run")
    assert f"--output_dir={ro / 'run'}: cannot create it (Read-only file system)" in err, err[-2000:]


# --- an image that cannot be decoded, met mid-run: a recorded aborted run, exit 2, naming file/record/image -------
def _truncate_one_image(src, dst, record=5):
  """A copy of the demo data in which one train record's JPEG is cut in half (a truncated download): the record
  itself is intact (valid TFRecord, valid Example), and the manifest records the new size, so only decoding it
  fails. Returns (shard path, record index, image name)."""
  import tensorflow as tf
  from tf_gp2bm.files import sha256_file
  from tf_gp2bm.formats.imagenet import MANIFEST
  shutil.copytree(src, dst)
  manifest = json.loads((dst / MANIFEST).read_text())
  name = sorted(manifest["splits"]["train"]["shards"])[0]
  path = dst / name
  records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
  example = tf.train.Example.FromString(records[record])
  encoded = example.features.feature["image/encoded"].bytes_list.value
  encoded[0] = encoded[0][:len(encoded[0]) // 2]
  image = example.features.feature["image/filename"].bytes_list.value[0].decode()
  records[record] = example.SerializeToString()
  with tf.io.TFRecordWriter(str(path)) as writer:
    for r in records:
      writer.write(r)
  manifest["splits"]["train"]["shards"][name].update(bytes=path.stat().st_size, sha256=sha256_file(str(path)))
  (dst / MANIFEST).write_text(json.dumps(manifest))
  return path, record, image


@pytest.mark.slow
@pytest.mark.parametrize("image_op", ["fused", "tf"])
def test_undecodable_image_mid_run_names_file_record_and_image(demo_imagenet, tmp_path, image_op):
  bad_shard, index, image = _truncate_one_image(demo_imagenet, tmp_path / "data")
  out = tmp_path / "run"
  r = run_train(*SMOKE, f"--data_dir={tmp_path / 'data'}", f"--output_dir={out}", "--seed=3",
                f"--image_op={image_op}", "--train_epochs=2", timeout=600)
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  expected = f"{bad_shard}: record {index} (image {image}) cannot be decoded ("
  assert expected in r.stderr and "Invalid JPEG data" in r.stderr.split(expected, 1)[1], r.stderr[-3000:]
  summary = json.loads((out / "run.json").read_text())
  assert summary["status"] == "aborted" and summary["exit_code"] == 2 and expected in summary["reason"]
  events = _mllog(out / "mlperf.log")
  assert "run_start" in [e["key"] for e in events]  # met mid-run: the clock ran, the log is closed as aborted
  assert events[-1]["key"] == "run_stop" and events[-1]["metadata"]["status"] == "aborted"
