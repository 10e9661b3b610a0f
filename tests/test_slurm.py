"""The Slurm path against a real one-node Slurm (tests/slurm_cluster.py installs and starts it privately):
the allocation is detected, preflight and the cache drop go through srun, scripts/slurm/run.sub trains a smoke run
with Horovod ranks from Slurm (and through a tf.data service it starts and stops, DATA_SERVICE_NODES), and the
driver runs a set under salloc. If Slurm cannot start, these tests fail
with the reason."""
import json
import os
import random
import socket
import subprocess
import sys
import time

import pytest

from conftest import PYTHON, ROOT, check_compliance
from tf_gp2bm import data_service
from test_multinode import EXPECTED_COLLECTIVES, MULTIWORKER_COLLECTIVES, collective_results

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]
SMOKE = ["--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags"]


def _env(cluster, **extra):
  return dict(cluster.env, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
              PATH=f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}", **extra)


def _in_allocation(cluster, code, tasks=2, timeout=900):
  """Runs python code under `salloc -n tasks` (one node) and returns the CompletedProcess."""
  return subprocess.run(["salloc", f"--ntasks={tasks}", f"--ntasks-per-node={tasks}", "--nodes=1", PYTHON, "-c", code],
                        env=_env(cluster), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_allocation_is_detected(slurm):
  r = _in_allocation(slurm, "from tf_gp2bm.driver import launch\n"
                            "print('LAUNCH', launch.from_args(launcher='slurm'))\n"
                            "try:\n  launch.from_args(np=3, launcher='slurm')\n"
                            "except Exception as e:\n  print('ERROR', e)\n")
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"LAUNCH Launch(kind='slurm', np=2, hosts=(('{slurm.node}', 2),), hvd_args=())" in r.stdout
  assert "ERROR --np=3 but the Slurm allocation (2 tasks)" in r.stdout


def test_preflight_and_cache_drop_through_srun(slurm, tmp_path):
  data = tmp_path / "imagenet"
  data.mkdir()
  (data / "manifest.json").write_text("{}")
  argv = ["resnet", f"--resnet_data_dir={data}", f"--results_root={tmp_path / 'results'}"]
  r = _in_allocation(slurm, "import json\nfrom tf_gp2bm.driver import cli, hosts, launch\n"
                            "run = launch.from_args(launcher='slurm')\n"
                            f"print('ROWS', json.dumps(hosts.preflight(run, cli.parse_args({argv!r}))))\n"
                            "print('DROP', json.dumps(hosts.drop_caches_detail(run)))\n")
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  rows = {name: (status, detail) for name, status, detail in
          json.loads(r.stdout.split("ROWS ", 1)[1].splitlines()[0])}
  assert rows["hosts answer"] == ("PASS", f"1: {slurm.node}")
  for name in ("same versions on every host", "same source on every host", f"data {data}"):
    assert rows[name][0] == "PASS", rows[name]
  dropped, detail = json.loads(r.stdout.split("DROP ", 1)[1].splitlines()[0])
  assert (dropped, detail) == (True, "page cache dropped on 1 hosts") or not dropped and slurm.node in detail


def test_multiworker_cluster_from_the_slurm_step(slurm):
  r = subprocess.run(["srun", "--ntasks=2", "--ntasks-per-node=2", PYTHON, "-c", MULTIWORKER_COLLECTIVES],
                     env=_env(slurm), capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  assert collective_results(r.stdout) == EXPECTED_COLLECTIVES, r.stdout[-2000:]


def test_run_sub_trains_a_smoke_run_with_horovod_ranks_from_slurm(slurm, demo_imagenet, tmp_path):
  out = tmp_path / "run"
  r = subprocess.run(["sbatch", "--wait", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2",
                      f"--output={tmp_path / 'job-%j.out'}", os.path.join(ROOT, "scripts", "slurm", "run.sub"),
                      "train", *SMOKE, f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--weights_digest",
                      "--seed=17"], env=_env(slurm), capture_output=True, text=True, timeout=2400, cwd=ROOT)
  (job_out,) = tmp_path.glob("job-*.out")
  text = job_out.read_text()
  assert r.returncode == 0, r.stdout + r.stderr + text[-4000:]
  assert "horovod: rank 0/2" in (out / "console.log").read_text()
  assert "run.sub: training step exit 0" in text
  assert f"{os.uname().nodename} " in (out / "cache_drop.log").read_text()
  digests = {(out / f"weights_digest.rank{i}").read_text() for i in range(2)}
  assert len(digests) == 1
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report


def test_run_sub_refuses_without_an_output_dir(slurm, tmp_path):
  r = subprocess.run(["sbatch", "--wait", "--ntasks=1", f"--output={tmp_path / 'job.out'}",
                      os.path.join(ROOT, "scripts", "slurm", "run.sub"), "train", *SMOKE],
                     env=_env(slurm), capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert r.returncode != 0
  assert "--output_dir=DIR is required" in (tmp_path / "job.out").read_text()


def test_run_sub_runs_the_driver_inside_the_allocation(slurm, tmp_path):
  flags = tmp_path / "flags" / "resnet"
  flags.mkdir(parents=True)
  # The smoke config cut to two epochs (one eval): the launch path is under test, not convergence.
  (flags / "smoke.flags").write_text((ROOT / "flags" / "resnet" / "smoke.flags").read_text() + "\n--train_epochs=2\n")
  demo_data = os.path.join(ROOT, "results", "demo_data")  # the demo's own cache (gitignored), made once if absent
  r = subprocess.run(["sbatch", "--wait", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2",
                      f"--output={tmp_path / 'job.out'}", os.path.join(ROOT, "scripts", "slurm", "run.sub"),
                      "demo", "--tasks", "resnet", "--runs_resnet=1", f"--results_root={tmp_path / 'results'}",
                      f"--demo_data_dir={demo_data}", f"--flags_dir={tmp_path / 'flags'}", "--force"],
                     env=_env(slurm, SRUN_EXTRA="--label"), capture_output=True, text=True, timeout=2400,
                     cwd=ROOT)
  text = (tmp_path / "job.out").read_text()
  assert r.returncode in (0, 3), r.stdout + r.stderr + text[-4000:]
  (set_dir,) = (tmp_path / "results").glob("*-demo")
  record = json.loads((set_dir / "runs" / "resnet" / "run_0" / "driver.json").read_text())
  # The driver found the allocation and ran the trainer as one srun step, with run.sub's srun options.
  assert record["command"][1:5] == ["-m", "tf_gp2bm.driver.srun", "--np=2", "--ntasks_per_node=2"], record
  assert "--label" in record["command"]
  assert record["exit_code"] in (0, 3) and record["compliance_passed"], record
  assert "horovod: rank 0/2" in (set_dir / "runs" / "resnet" / "run_0" / "console.log").read_text()
  (pre,) = set_dir.glob("preflight-*.json")
  rows = {row["check"]: row for row in json.loads(pre.read_text())}
  assert rows["hosts answer"]["status"] == "PASS", rows["hosts answer"]


# --- run.sub with the tf.data service (DATA_SERVICE_NODES) ----------------------------------------------------------
def _free_ports(n):
  """The first of n consecutive free ports on this host (the dispatcher's, then its workers')."""
  for _ in range(100):
    first = random.randrange(20000, 60000)
    try:
      for port in range(first, first + n):
        with socket.socket() as s:
          s.bind(("", port))
      return first
    except OSError:
      continue
  raise AssertionError(f"no {n} consecutive free ports")


def _service_processes(port):
  """Command lines of this host's data_service processes that use `port` (as theirs or as their dispatcher's)."""
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode(errors="replace").split("\0")
    except OSError:
      continue
    if "tf_gp2bm.data_service" in argv and any(a.endswith(f"={port}") or a.endswith(f":{port}") for a in argv):
      found.append(" ".join(argv))
  return found


def _sbatch_run_sub(cluster, tmp_path, args, tasks=1, **env):
  r = subprocess.run(["sbatch", "--wait", "--nodes=1", f"--ntasks={tasks}", f"--ntasks-per-node={tasks}",
                      f"--output={tmp_path / 'job.out'}", os.path.join(ROOT, "scripts", "slurm", "run.sub"), *args],
                     env=_env(cluster, **env), capture_output=True, text=True, timeout=900, cwd=ROOT)
  return r, (tmp_path / "job.out").read_text()


def test_run_sub_trains_through_a_data_service_it_starts_on_the_node(slurm, demo_imagenet, tmp_path):
  """DATA_SERVICE_NODES=1 on a one-node allocation: the service shares the node with the two ranks; run.sub starts
  a dispatcher and a worker as srun steps, waits for them, trains through them, and stops them."""
  port, out = _free_ports(2), tmp_path / "run"
  r, text = _sbatch_run_sub(slurm, tmp_path, ["train", *SMOKE, f"--data_dir={demo_imagenet}", f"--output_dir={out}",
                                              "--seed=5", "--resnet_depth=10", "--train_epochs=2"], tasks=2,
                            DATA_SERVICE_NODES="1", DATA_SERVICE_PORT=str(port))
  assert r.returncode in (0, 3), r.stdout + r.stderr + text[-4000:]
  node = slurm.node
  assert f"run.sub: one node: the tf.data service shares {node} with the ranks" in text
  assert f"run.sub: tf.data service dispatcher on {node}:{port} serves" in text, text[-4000:]
  assert f"run.sub: tf.data service worker on {node}:{port + 1} serves" in text, text[-4000:]
  assert "run.sub: tf.data service stopped" in text, text[-4000:]
  console = (out / "console.log").read_text()
  assert "horovod: rank 0/2" in console
  assert f"train images: from the tf.data service at {node}:{port}" in console, console[-3000:]
  assert f"--data_service={node}:{port}" in (out / "flags.txt").read_text()
  for log in (f"data_service-dispatcher-{node}.log", f"data_service-worker-{node}-1.log"):
    assert data_service.READY in (out / log).read_text(), log
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report
  deadline = time.time() + 30  # the job has ended; its steps' processes go with it
  while _service_processes(port) and time.time() < deadline:
    time.sleep(1)
  assert not _service_processes(port), _service_processes(port)


def test_run_sub_stops_when_a_data_service_server_does_not_start(slurm, demo_imagenet, tmp_path):
  """The worker's port is taken: the worker exits, run.sub names the role and node and exits 2 before any training
  step, with the server's last lines, and stops the dispatcher it started. run.sub runs under salloc here, so the
  allocation outlives it: the dispatcher is gone because run.sub stopped it, not because the job ended."""
  port, out = _free_ports(2), tmp_path / "run"
  run_sub = os.path.join(ROOT, "scripts", "slurm", "run.sub")
  script = (f"bash {run_sub} train {' '.join(SMOKE)} --data_dir={demo_imagenet} --output_dir={out} "
            f">{tmp_path / 'job.out'} 2>&1; echo $? >{tmp_path / 'rc'}; "
            f"pgrep -a -f '[t]f_gp2bm.data_service dispatcher --port={port}' >{tmp_path / 'left'} || true")
  with socket.socket() as taken:
    taken.bind(("", port + 1))
    taken.listen()
    r = subprocess.run(["salloc", "--nodes=1", "--ntasks=1", "bash", "-c", script], timeout=600, cwd=ROOT,
                       env=_env(slurm, DATA_SERVICE_NODES="1", DATA_SERVICE_PORT=str(port)), capture_output=True,
                       text=True)
  text = (tmp_path / "job.out").read_text()
  assert r.returncode == 0 and (tmp_path / "rc").read_text().strip() == "2", r.stderr + text[-3000:]
  assert f"run.sub: tf.data service dispatcher on {slurm.node}:{port} serves" in text, text[-3000:]
  assert f"run.sub: tf.data service worker on {slurm.node}: exited before it served" in text, text[-3000:]
  assert "Address already in use" in text, text[-3000:]
  assert "tf_gp2bm.driver.srun" not in text and not (out / "console.log").exists(), text[-3000:]
  assert (tmp_path / "left").read_text() == "", "the dispatcher outlived run.sub"
  assert "run.sub: tf.data service stopped" in text, text[-3000:]


@pytest.mark.parametrize("env, says", [
    (dict(DATA_SERVICE_NODES="two"), "DATA_SERVICE_NODES=two: expected a positive whole number"),
    (dict(DATA_SERVICE_NODES="1", DATA_SERVICE_WORKERS_PER_NODE="0"),
     "DATA_SERVICE_WORKERS_PER_NODE=0: expected a positive whole number"),
    (dict(DATA_SERVICE_NODES="1", DATA_SERVICE_PORT="http"), "DATA_SERVICE_PORT=http: expected a port number"),
    (dict(DATA_SERVICE_NODES="2"), "DATA_SERVICE_NODES=2 but the allocation has 1 node(s)")])
def test_run_sub_refuses_bad_data_service_settings(slurm, tmp_path, env, says):
  r, text = _sbatch_run_sub(slurm, tmp_path, ["train", *SMOKE, f"--output_dir={tmp_path / 'run'}"], **env)
  assert r.returncode == 2, r.stdout + r.stderr + text[-2000:]  # sbatch --wait exits with the job's code
  assert f"run.sub: {says}" in text, text[-2000:]
