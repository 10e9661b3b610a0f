"""The rules start the clock before any part of the system touches the dataset: the trainer runs under
`strace -f -e trace=openat` and the first open of any record file (training or eval) must come after run_start's
time_ms in mlperf.log. Manifests, the vocab and the model checkpoint are metadata and may be read during init."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import PYTHON, ROOT, run_train

OPEN = re.compile(r'^\d+\s+(?P<t>\d+\.\d+) openat\([^"]*"(?P<path>[^"]+)".*\) = (?P<fd>-?\d+)')
NOT_RECORDS = (".json", ".txt", ".md5", ".md", ".log", ".py")


def _strace():
  path = shutil.which("strace")
  if path is None:
    pytest.fail("strace is not installed (apt-get install -y strace; scripts/setup.sh installs it): this test "
                "needs it to watch which files the trainer opens")
  return path


def _run_start_ms(log):
  for line in open(log):
    if ":::MLLOG " in line:
      event = json.loads(line.split(":::MLLOG ", 1)[1])
      if event["key"] == "run_start":
        return event["time_ms"]
  raise AssertionError(f"{log}: no run_start")


def _record_opens(trace, data_dirs):
  """(time in ms, path) of every successful open of a file inside the data folders that is not metadata."""
  roots = [os.path.realpath(d) + os.sep for d in data_dirs]
  opens = []
  for line in open(trace):
    m = OPEN.match(line)
    if not m or int(m.group("fd")) < 0:
      continue
    path = os.path.realpath(m.group("path"))
    if any(path.startswith(r) for r in roots) and not path.endswith(NOT_RECORDS):
      opens.append((float(m.group("t")) * 1000, path))
  return opens


def _traced_run(tmp_path, args, data_dirs):
  out, trace = tmp_path / "run", tmp_path / "openat.trace"
  strace = _strace()
  # strace runs the trainer as users do (python -m), following every thread and child process.
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
  r = subprocess.run([strace, "-f", "-ttt", "-e", "trace=openat", "-o", str(trace), PYTHON, "-m", "tf_gp2bm.train",
                      *args, f"--output_dir={out}", "--seed=5"], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=1500)
  assert r.returncode in (0, 3), r.stdout[-3000:] + r.stderr[-3000:]
  run_start = _run_start_ms(out / "mlperf.log")
  opens = _record_opens(trace, data_dirs)
  assert opens, f"the trace shows no record file opened at all under {data_dirs}: the check would prove nothing"
  first_ms, first_path = min(opens)
  assert first_ms >= run_start, (f"{first_path} was opened {run_start - first_ms:.0f} ms before run_start")


@pytest.mark.slow
def test_bert_reads_no_record_before_run_start(demo_bert, tmp_path):
  # One eval interval is enough: the first reads of training and eval records happen after run_start.
  args = ["--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags", *demo_bert.flags, "--max_samples=1600"]
  _traced_run(tmp_path, args, [demo_bert.train, demo_bert.eval])


@pytest.mark.slow
def test_resnet_reads_no_record_before_run_start(demo_imagenet, tmp_path):
  args = ["--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}",
          "--train_epochs=2", "--resnet_depth=10"]
  _traced_run(tmp_path, args, [demo_imagenet])


@pytest.mark.slow
@pytest.mark.multiproc
def test_data_service_workers_read_no_record_before_run_start(demo_imagenet, tmp_path):
  # The dispatcher and a worker run under strace from their start; the trainer reads its train images from them.
  from test_data_service import _free_port, _start, _stop
  strace, port, traces = _strace(), _free_port(), [tmp_path / "dispatcher.trace", tmp_path / "worker.trace"]
  procs = [_start("dispatcher", port, strace_to=(strace, traces[0]))]
  try:
    procs.append(_start("worker", _free_port(), f"--dispatcher=localhost:{port}", "--host=localhost",
                        strace_to=(strace, traces[1])))
    out = tmp_path / "run"
    r = run_train("--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}",
                  f"--output_dir={out}", "--seed=5", "--resnet_depth=10", f"--data_service=localhost:{port}")
    assert r.returncode in (0, 3), r.stdout[-3000:] + r.stderr[-3000:]
  finally:
    for proc in procs:
      _stop(proc)
  run_start = _run_start_ms(out / "mlperf.log")
  opens = _record_opens(traces[1], [demo_imagenet])
  assert opens, "the worker's trace shows no record opened: the check would prove nothing"
  for trace in traces:
    for ms, path in _record_opens(trace, [demo_imagenet]):
      assert ms >= run_start, f"{trace.name}: {path} was opened {run_start - ms:.0f} ms before run_start"
