"""ResNet train input through TensorFlow's tf.data service: a real dispatcher and two real workers on loopback
(`python -m tf_gp2bm.data_service`), every train image once per pass over 1 and 2 ranks (the colour oracle of
test_exact_once) -- in one process, and as two Horovod ranks under horovodrun --, a smoke run that reaches a
compliant log, and the refusals (exit 2).

This module is also the rank program of the horovodrun test: `python -m test_data_service DATA_DIR HOST:PORT
IMAGES OUT_DIR` reads IMAGES (per rank, comma-separated) train images as the trainer does and writes their colours.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from conftest import HOROVODRUN, PYTHON, ROOT, build_trainer, check_compliance, require_horovod, run_train
from test_exact_once import RESNET_FLAGS, _colour_index, _read_imagenet, _record_files, _write_colour_records
from tf_gp2bm import data_service
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.resnet import imagenet_input

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(role, port, *args, strace_to=None):
  """A dispatcher or worker process, once it serves; strace_to=(strace, trace file) runs it under strace."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
  tracer = [strace_to[0], "-f", "-ttt", "-e", "trace=openat", "-o", str(strace_to[1])] if strace_to else []
  proc = subprocess.Popen([*tracer, PYTHON, "-m", "tf_gp2bm.data_service", role, f"--port={port}", *args], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)  # its own group: _stop ends strace and the server together
  for line in proc.stdout:  # the server says when it serves
    if data_service.READY in line:
      return proc
  raise AssertionError(f"data_service {role} exited ({proc.wait()}) before it served")


def _stop(proc):
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()


@pytest.fixture(scope="module")
def service():
  """HOST:PORT of a dispatcher with two workers, each its own process."""
  port = _free_port()
  procs = [_start("dispatcher", port)]
  try:
    for _ in range(2):
      procs.append(_start("worker", _free_port(), f"--dispatcher=localhost:{port}", "--host=localhost"))
    yield f"localhost:{port}"
  finally:
    for proc in procs:
      _stop(proc)


@pytest.fixture(scope="module")
def colour_imagenet(tmp_path_factory):
  return _write_colour_records(str(tmp_path_factory.mktemp("colour") / "data"))


def test_address_is_checked_before_the_network():
  with pytest.raises(InputError, match="--data_service='nohost'"):
    data_service.check_address("nohost")
  assert "no tf.data service dispatcher answers at 127.0.0.1:1" in data_service.reachable("127.0.0.1:1")


@pytest.mark.parametrize("ranks", [1, 2])
def test_every_image_once_per_pass_over_ranks(service, colour_imagenet, ranks):
  want = sorted(_read_imagenet(_record_files(colour_imagenet, "train")))
  records = imagenet_input.ImageNetRecords(colour_imagenet)
  passes = [[], []]
  for rank in range(ranks):
    ctx = tf.distribute.InputContext(ranks, rank)
    share = sum(n for f, n in records.shards("train")[rank::ranks])
    ds = imagenet_input.train_dataset(records, ctx, 3, 32, 10, seed=11, image_op="tf", data_service=service)
    seen = [_colour_index(e["image"]) for e in ds.unbatch().take(2 * share).as_numpy_iterator()]
    passes[0] += seen[:share]
    passes[1] += seen[share:]
  for number, seen in enumerate(passes):
    assert sorted(seen) == want, f"pass {number} over {ranks} rank(s) is not every image once"


def rank_reads(data_dir, address, images, out_dir):
  """One Horovod rank: the trainer's own assembly (flags, runtime from the launcher, task, input check) and its
  train input, read as Trainer.run reads it, until this rank has its IMAGES; their colours go to OUT_DIR."""
  trainer = build_trainer("resnet", *RESNET_FLAGS, f"--data_dir={data_dir}", f"--data_service={address}",
                          distribution="auto", build=False)
  runtime, task = trainer.runtime, trainer.task
  want = [int(n) for n in images.split(",")][runtime.rank]
  seen = []
  for batch in runtime.distribute_dataset(task.train_dataset):
    seen += [_colour_index(image) for image in batch["image"].numpy()]
    if len(seen) >= want:
      break
  with open(os.path.join(out_dir, f"rank{runtime.rank}.json"), "w") as f:
    json.dump({"runtime": runtime.name, "rank": runtime.rank, "size": runtime.size, "seen": seen[:want]}, f)


def test_every_image_once_per_pass_over_two_horovod_ranks(service, colour_imagenet, tmp_path):
  """Two processes under horovodrun, each rank from Horovod through the project's runtime, each reading two passes
  of its share: per pass every train image once over both ranks, the ranks' sets disjoint, each rank the same
  images in both passes."""
  require_horovod()
  files = _record_files(colour_imagenet, "train")
  want = sorted(_read_imagenet(files))
  # The contract: rank r reads the round-robin share r::2 of the sorted train files (uneven: 18 and 13 images).
  shares = [len(_read_imagenet(files[rank::2])) for rank in range(2)]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), TF_USE_LEGACY_KERAS="1",
             TF_CPP_MIN_LOG_LEVEL="2", PATH=f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}")
  r = subprocess.run([HOROVODRUN, "--gloo", "-np", "2", "-H", "localhost:1,127.0.0.1:1", PYTHON, "-m",
                      "test_data_service", colour_imagenet, service, ",".join(str(2 * n) for n in shares),
                      str(tmp_path)], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
  assert [(d["runtime"], d["rank"], d["size"]) for d in ranks] == [("horovod", 0, 2), ("horovod", 1, 2)]
  passes = [[d["seen"][:n], d["seen"][n:]] for d, n in zip(ranks, shares)]
  for number in range(2):
    first, second = passes[0][number], passes[1][number]
    assert not set(first) & set(second), f"pass {number}: both ranks read {sorted(set(first) & set(second))}"
    assert sorted(first + second) == want, f"pass {number} over 2 Horovod ranks is not every image once"
  for rank, (one, two) in enumerate(passes):
    assert sorted(one) == sorted(two), f"rank {rank} read other images in its second pass"


def test_resnet_smoke_run_through_the_service_is_compliant(service, demo_imagenet, tmp_path):
  out = tmp_path / "run"
  r = run_train("--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}",
                f"--output_dir={out}", "--seed=3", "--resnet_depth=10", f"--data_service={service}")
  assert r.returncode in (0, 3), r.stdout[-3000:] + r.stderr[-3000:]
  assert "from the tf.data service" in r.stdout + r.stderr
  ok, text = check_compliance(str(out / "mlperf.log"), tmp_path)
  assert ok, text[-3000:]


@pytest.mark.parametrize("extra, says", [
    (("--data_service=127.0.0.1:1",), "no tf.data service dispatcher answers at 127.0.0.1:1"),
    (("--data_service=127.0.0.1:1", "--deterministic"), "with --deterministic")])
def test_unreachable_dispatcher_and_deterministic_are_refused(demo_imagenet, tmp_path, extra, says):
  r = run_train("--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}",
                f"--output_dir={tmp_path / 'run'}", *extra)
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
  assert says in r.stdout + r.stderr


def test_worker_killed_mid_run_ends_the_run_as_aborted_bad_input(demo_imagenet, tmp_path):
  """TF's consumer waits forever for a dead worker's files; the bounded wait ends the run: exit 2, a message naming
  the dispatcher, a compliant-format log closed with run_stop aborted."""
  port = _free_port()
  dispatcher = _start("dispatcher", port)
  workers = [_start("worker", _free_port(), f"--dispatcher=localhost:{port}", "--host=localhost") for _ in range(2)]
  out = tmp_path / "run"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
  trainer = subprocess.Popen(
      [PYTHON, "-m", "tf_gp2bm.train", "--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags",
       f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--seed=3", "--resnet_depth=10",
       "--base_learning_rate=1e-5",  # no early target: training still runs when the worker dies
       f"--data_service=localhost:{port}", "--data_service_timeout_s=10"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + 300
    while time.time() < deadline and trainer.poll() is None:  # kill a worker once training runs
      log = out / "mlperf.log"
      if log.exists() and '"key": "block_start"' in log.read_text():
        break
      time.sleep(0.5)
    assert trainer.poll() is None, "the run ended before a worker was killed:\n" + trainer.communicate()[0][-3000:]
    time.sleep(1)
    _stop(workers[0])
    text, _ = trainer.communicate(timeout=300)
  finally:
    if trainer.poll() is None:
      trainer.kill()
    for proc in [dispatcher, *workers[1:]]:
      _stop(proc)
  assert trainer.returncode == 2, text[-3000:]
  assert f"the tf.data service at localhost:{port}" in text and "stopped answering" in text, text[-3000:]
  last = (out / "mlperf.log").read_text().strip().splitlines()[-1]
  assert '"key": "run_stop"' in last and '"status": "aborted"' in last, last
  ok, checked = check_compliance(str(out / "mlperf.log"), tmp_path)
  assert ok, checked[-3000:]


if __name__ == "__main__":
  rank_reads(*sys.argv[1:])
