"""Faults around the run-set driver, each driven end to end through run_benchmark.sh (one case per test, named
after the case): two drivers on one results folder, a stale lock, a driver killed after a trainer finished, a
finished log changed before `report`, a flagfile typo, and a rank's bad-input exit hidden by the launcher.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tf_gp2bm.driver import cli, flow, lock, package, runs, system_desc
from tf_gp2bm.files import write_json_atomic

from conftest import mounted_tmpfs, remount
from test_driver import QUIET, REPO, add_crafted_run, finish_crafted_set, make_set
from test_scoring import write_log

DRIVER = os.path.join(REPO, "run_benchmark.sh")
ENV = dict(os.environ, PYTHON=sys.executable, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")


def driver(*args, timeout=600):
  return subprocess.run([DRIVER, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


def finished_demo_set(tmp_path):
  rs = make_set(tmp_path)
  finish_crafted_set(rs)
  return rs


def test_second_driver_is_refused_naming_the_holder(tmp_path):
  rs = finished_demo_set(tmp_path)
  root = os.path.dirname(rs.path)
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tf_gp2bm.driver.lock import ResultsLock; "
                             f"ResultsLock({root!r}).acquire(); print('held', flush=True); time.sleep(120)"],
                            stdout=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
  try:
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    out = driver("report", f"--set_dir={rs.path}")
    assert out.returncode == 1 and time.monotonic() - t0 < 30
    assert f"pid {holder.pid}" in out.stderr and "in use by another driver" in out.stderr, out.stderr
    assert not os.path.exists(os.path.join(rs.path, "summary.json"))  # nothing was touched
  finally:
    holder.kill()
    holder.wait()


def test_stale_lock_of_a_dead_driver_does_not_block(tmp_path):
  rs = finished_demo_set(tmp_path)
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  with open(os.path.join(os.path.dirname(rs.path), lock.LOCK_NAME), "w") as f:
    f.write(f"pid {dead.stdout.strip()} (run_benchmark.sh demo), since 2026-01-01T00:00:00Z\n")
  out = driver("report", f"--set_dir={rs.path}")
  assert out.returncode == 0, out.stdout + out.stderr
  assert "DEMO:" in out.stdout and os.path.exists(os.path.join(rs.path, "summary.json"))


def test_killed_driver_after_trainer_finished_is_recorded_not_redone(tmp_path):
  demo_data = tmp_path / "demo_data" / "resnet"
  demo_data.mkdir(parents=True)
  (demo_data / flow.DEMO_DONE).touch()
  argv = ["demo", "--tasks", "resnet", "--runs_resnet=3", f"--demo_data_dir={tmp_path / 'demo_data'}",
          f"--results_root={tmp_path / 'results'}"]
  # The set as the killed driver left it: created by the same command, two runs recorded, the third not.
  config = flow.prepare_demo_data(cli.parse_args(argv), QUIET)
  run_launch = flow.make_launch(config)
  rs = runs.RunSet.create(config.results_root, config.record(run_launch.np,
                                                             flow.default_system_name(config, run_launch)))
  package.snapshot_source(rs.path)
  write_json_atomic(os.path.join(rs.path, "system.json"),
                    system_desc.build(config.org, rs.config.system_name, config.status, {}, demo=True))
  add_crafted_run(rs, "resnet", 0, 20)
  add_crafted_run(rs, "resnet", 1, 21)
  # Run 2: the trainer finished (run_stop logged, run.json written), the driver died before recording it.
  d = rs.run_dir("resnet", 2)
  os.makedirs(d)
  write_log(os.path.join(d, "mlperf.log"), "resnet", 22, [0.5, 0.77], seed=77)
  with open(os.path.join(d, "run.json"), "w") as f:
    json.dump({"exit_code": 0, "seed": 77, "samples_trained": 5000}, f)
  write_json_atomic(os.path.join(d, "driver.json"), {"task": "resnet", "index": 2, "seed": 77, "finished": False,
                                                     "cache_clear": True})
  # An earlier interrupted attempt of run 1, kept aside: the reports must list it.
  os.makedirs(rs.run_dir("resnet", 1) + ".attempt-1")
  write_json_atomic(os.path.join(rs.run_dir("resnet", 1) + ".attempt-1", "driver.json"),
                    {"task": "resnet", "index": 1, "seed": 55, "finished": False})
  out = driver(*argv)
  assert "recorded from its files" in out.stdout, out.stdout + out.stderr
  assert "Traceback" not in out.stderr and out.returncode == 0, out.stdout + out.stderr
  rec = runs.RunSet.driver_record(d)
  assert rec["finished"] and rec["recovered"] and rec["seed"] == 77 and rec["converged"] and rec["exit_code"] == 0
  assert not os.path.exists(d + ".attempt-1")  # not moved aside, not redone
  s = json.load(open(os.path.join(rs.path, "summary.json")))
  assert s["tasks"]["resnet"]["runs"][2]["recovered"] and s["tasks"]["resnet"]["runs"][2]["seed"] == 77
  assert s["tasks"]["resnet"]["runs"][1]["attempts"] == [
      {"folder": "runs/resnet/run_1.attempt-1", "seed": 55, "started": None, "note": "interrupted; kept as it was"}]
  assert "earlier attempts: runs/resnet/run_1.attempt-1" in open(os.path.join(rs.path, "summary.md")).read()


def test_report_after_a_finished_log_changed_rechecks_it(tmp_path):
  rs = finished_demo_set(tmp_path)
  assert flow.finalize(rs, QUIET) == 0
  log = os.path.join(rs.run_dir("bert", 5), "mlperf.log")
  text = open(log).read()
  assert '"value": 0.73' in text
  with open(log, "w") as f:
    f.write(text.replace('"value": 0.73', '"value": 0.71'))  # now below the 0.720 target
  out = driver("report", f"--set_dir={rs.path}")
  assert "Traceback" not in out.stderr and "FileExistsError" not in out.stdout + out.stderr, out.stderr
  assert "runs/bert/run_5/mlperf.log changed since the run was recorded" in out.stdout
  assert "re-running the compliance checker" in out.stdout
  assert out.returncode == flow.EXIT_NOT_SUBMITTABLE  # two BERT runs now fail: no score
  s = json.load(open(os.path.join(rs.path, "summary.json")))
  run5 = s["tasks"]["bert"]["runs"][5]
  assert run5["status"] == "not converged" and run5["log_changed"] and not s["tasks"]["bert"]["valid"]
  assert "runs/bert/run_5/mlperf.log: changed after the run was recorded" in s["verdict"]["reasons"]
  assert os.path.isdir(os.path.join(rs.path, "submission.superseded-1"))  # the old tree is kept, not lost
  again = driver("report", f"--set_dir={rs.path}")  # still flagged on the next report
  assert "changed after the run was recorded" in open(os.path.join(rs.path, "summary.md")).read()
  assert again.returncode == flow.EXIT_NOT_SUBMITTABLE


SMOKE = os.path.join(REPO, "flags", "resnet", "smoke.flags")


@pytest.mark.slow
def test_flagfile_typo_stops_the_set_before_any_run(tmp_path):
  flags = tmp_path / "flags" / "resnet"
  flags.mkdir(parents=True)
  (flags / "smoke.flags").write_text(open(SMOKE).read() + "\n--global_batch_sizee=64\n")
  demo_data = tmp_path / "demo_data" / "resnet"
  demo_data.mkdir(parents=True)
  (demo_data / flow.DEMO_DONE).touch()
  out = driver("demo", "--tasks", "resnet", "--runs_resnet=3", f"--flags_dir={tmp_path / 'flags'}",
               f"--demo_data_dir={tmp_path / 'demo_data'}", f"--results_root={tmp_path / 'results'}", "--force")
  assert out.returncode == 2, out.stdout + out.stderr
  assert "global_batch_sizee" in out.stdout and "nothing is started" in out.stdout
  assert not list((tmp_path / "results").glob("*-demo/runs"))


@pytest.mark.slow
@pytest.mark.multiproc
def test_bad_input_on_two_ranks_stops_the_set(tmp_path):
  """horovodrun reports exit 1 when its ranks exit 2; the driver reads rank 0's run.json and stops the set."""
  empty = tmp_path / "no_imagenet"
  empty.mkdir()
  demo_data = tmp_path / "demo_data" / "resnet"
  demo_data.mkdir(parents=True)
  (demo_data / flow.DEMO_DONE).touch()
  out = driver("demo", "--tasks", "resnet", "--runs_resnet=3", "--np=2", f"--resnet_data_dir={empty}",
               f"--demo_data_dir={tmp_path / 'demo_data'}", f"--results_root={tmp_path / 'results'}", "--force",
               timeout=900)
  assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
  set_dir = next((tmp_path / "results").glob("*-demo"))
  rec = runs.RunSet.driver_record(str(set_dir / "runs" / "resnet" / "run_0"))
  assert rec["exit_code"] == 2 and rec["launcher_exit_code"] != 2 and rec["command"][0] == "horovodrun"
  assert not (set_dir / "runs" / "resnet" / "run_1").exists() and "set stopped" in out.stdout


# --- the driver's own interrupt: the stopped run is an attempt, kept aside and redone --------------------------
def demo_set_argv(tmp_path, demo_imagenet, runs=1):
  """A demo set of `runs` short ResNet runs (the smoke config cut to two epochs, one eval) on the session's demo
  data: the driver's bookkeeping is under test, not convergence."""
  flags = tmp_path / "flags" / "resnet"
  flags.mkdir(parents=True, exist_ok=True)
  (flags / "smoke.flags").write_text(open(SMOKE).read() + "\n--train_epochs=2\n")
  demo_data = tmp_path / "demo_data" / "resnet"
  demo_data.mkdir(parents=True, exist_ok=True)
  (demo_data / flow.DEMO_DONE).touch()
  return ["demo", "--tasks", "resnet", f"--runs_resnet={runs}", f"--resnet_data_dir={demo_imagenet}",
          f"--flags_dir={tmp_path / 'flags'}", f"--demo_data_dir={tmp_path / 'demo_data'}",
          f"--results_root={tmp_path / 'results'}", "--force"]


def start_driver(argv):
  """The driver as a person starts it at a terminal: SIGINT (Ctrl-C) at its default even when this test runs in a
  shell's background job, which starts with SIGINT ignored, and so would the driver and its trainers."""
  return subprocess.Popen([DRIVER, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                          start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(predicate, proc, what, timeout=600):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      pytest.fail(f"the driver ended (exit {proc.returncode}) before {what}: {proc.stdout.read()[-3000:]}")
    time.sleep(0.3)
  proc.kill()
  pytest.fail(f"no {what} after {timeout}s")


def logged(path, key):
  return os.path.exists(path) and f'"key": "{key}"' in open(path, errors="replace").read()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_driver_stopped_during_a_run_keeps_it_as_an_attempt_and_redoes_it(demo_imagenet, tmp_path, sig):
  argv = demo_set_argv(tmp_path, demo_imagenet)
  proc = start_driver(argv)
  log = lambda: next(iter((tmp_path / "results").glob("*-demo/runs/resnet/run_0/mlperf.log")), None)  # noqa: E731
  wait_for(lambda: log() and logged(log(), "block_start"), proc, "block_start in run 0")
  set_dir = log().parents[3]
  proc.send_signal(sig)
  output, _ = proc.communicate(timeout=120)
  run0 = set_dir / "runs" / "resnet" / "run_0"
  stopped = runs.RunSet.driver_record(str(run0))
  assert not stopped["finished"], output[-3000:]
  first_seed = stopped["seed"]
  # The trainer was told to stop and closed its log as aborted: a last line that must not make it a result.
  assert logged(str(run0 / "mlperf.log"), "run_stop")
  again = driver(*argv)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  rec = runs.RunSet.driver_record(str(run0))
  assert not rec.get("recovered") and rec["seed"] != first_seed, rec  # redone, not recorded as it was
  assert rec["finished"] and rec["exit_code"] in (0, 3) and rec["compliance_passed"]
  attempt = runs.RunSet.driver_record(str(run0) + ".attempt-1")
  assert attempt["seed"] == first_seed and not attempt["finished"]
  assert stopped["stopped"] == f"the driver was stopped by {sig.name}" + (" (Ctrl-C)" if sig == signal.SIGINT
                                                                          else ""), output[-3000:]
  assert "stopped attempt (the driver was stopped by" in again.stdout
  s = json.load(open(set_dir / "summary.json"))
  (row,) = s["tasks"]["resnet"]["runs"]
  assert row["attempts"] == [{"folder": "runs/resnet/run_0.attempt-1", "seed": first_seed,
                              "started": attempt["started"], "note": stopped["stopped"]}]


# --- the driver's own files on a full or read-only file system: say what and where, keep what was written -------
def _fill(disk):
  """Fills the file system at `disk` to the last byte; returns the filler's path."""
  filler = os.path.join(disk, "filler")
  fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
  try:
    while True:
      os.write(fd, b"\0" * (1 << 16))
  except OSError:
    pass
  finally:
    os.close(fd)
  return filler


def _snapshot(rs):
  """Every file of the set's runs, with its bytes: what a failed report must not lose or change."""
  found = {}
  for dirpath, _, files in os.walk(os.path.join(rs.path, "runs")):
    for name in files:
      with open(os.path.join(dirpath, name), "rb") as f:
        found[os.path.join(dirpath, name)] = f.read()
  return found


def test_report_on_a_full_disk_names_the_file_and_a_rerun_finishes(tmp_path):
  with mounted_tmpfs(tmp_path / "disk", size="64m") as disk:
    rs = finished_demo_set(disk)
    before = _snapshot(rs)
    filler = _fill(disk)
    out = driver("report", f"--set_dir={rs.path}")
    assert out.returncode == flow.EXIT_STOPPED, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "error: No space left on device: " + rs.path in out.stderr, out.stderr
    assert "rerun the same command" in out.stderr
    after = _snapshot(rs)
    assert all(after.get(p) == data for p, data in before.items())  # nothing already written was lost
    os.remove(filler)
    again = driver("report", f"--set_dir={rs.path}")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert json.load(open(os.path.join(rs.path, "summary.json")))["tasks"]["resnet"]["valid"]


def test_report_on_a_read_only_file_system_names_it_and_a_rerun_finishes(tmp_path):
  with mounted_tmpfs(tmp_path / "disk", size="64m") as disk:
    rs = finished_demo_set(disk)
    before = _snapshot(rs)
    remount(disk, read_only=True)
    out = driver("report", f"--set_dir={rs.path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stdout[-2000:] + out.stderr[-3000:]
    assert f"the results folder {os.path.dirname(rs.path)}: cannot create its lock file" in out.stderr
    assert "(Read-only file system)" in out.stderr, out.stderr
    remount(disk, read_only=False)
    assert _snapshot(rs) == before
    again = driver("report", f"--set_dir={rs.path}")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
