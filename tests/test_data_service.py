"""ResNet train input through TensorFlow's tf.data service: a real dispatcher and two real workers on loopback
(`python -m tf_gp2bm.data_service`), every train image once per pass over 1 and 2 ranks (the colour oracle of
test_exact_once), a smoke run that reaches a compliant log, and the refusals (exit 2)."""
import os
import signal
import socket
import subprocess
import time

import pytest
import tensorflow as tf

from conftest import PYTHON, ROOT, check_compliance, run_train
from test_exact_once import _colour_index, _read_imagenet, _record_files, _write_colour_records
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
