"""Multi-node on loopback: Horovod with two hosts, MultiWorkerMirroredStrategy with two workers, the driver with
--hosts, and the launch options' bad input. localhost and 127.0.0.1 are two hosts to horovodrun (cross_size 2)
and both are local to it, so no sshd is needed."""
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import PYTHON, ROOT, check_compliance, require_horovod
from tf_gp2bm.driver import cli, host_probe, hosts, launch
from tf_gp2bm.errors import InputError

SMOKE = ["--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags"]
LOOPBACK = "localhost:1,127.0.0.1:1"
HOROVODRUN = os.path.join(os.path.dirname(PYTHON), "horovodrun")
EVAL_EXAMPLES = 300  # the demo ImageNet's validation split


@pytest.fixture
def horovod_required():
  require_horovod()  # a skip here, a failure under CI=true


def _env(**extra):
  # horovodrun starts `python` from PATH on every host: the venv's, as on a real cluster.
  return dict(os.environ, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
              PATH=f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}", **extra)


def _mllog(path):
  return [json.loads(l.split(":::MLLOG ", 1)[1]) for l in open(path) if ":::MLLOG " in l]


def _check_one_log_same_weights(out, tmp_path):
  digests = {(out / f"weights_digest.rank{i}").read_text() for i in range(2)}
  assert len(digests) == 1, digests
  # One MLPerf log, from the chief (other files, like per-rank TensorFlow logs, may be there).
  assert [p.name for p in sorted(out.iterdir()) if p.is_file() and ":::MLLOG" in p.read_text(errors="ignore")] \
      == ["mlperf.log"]
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report
  events = _mllog(out / "mlperf.log")
  assert [e["value"] for e in events if e["key"] == "eval_samples"] == [EVAL_EXAMPLES]
  accuracies = [e["value"] for e in events if e["key"] == "eval_accuracy"]
  # Each accuracy is k/300: every validation image counted once over both processes (the trainer also refuses
  # any other total).
  assert accuracies and all(abs(a * EVAL_EXAMPLES - round(a * EVAL_EXAMPLES)) < 1e-6 for a in accuracies)
  return events


# --- launch options (fast, no TensorFlow) ---------------------------------------------------------------------------
def test_hosts_become_one_horovodrun_job():
  run = launch.from_args(hosts="node1:8,node2:8", hvd_args="--network-interface=ib0 --gloo-timeout-seconds=120")
  assert run == launch.Launch("hosts", 16, (("node1", 8), ("node2", 8)),
                              ("--network-interface=ib0", "--gloo-timeout-seconds=120"))
  argv = [PYTHON, "-m", "tf_gp2bm.train", "--task=resnet"]
  assert launch.command(run, argv) == ["horovodrun", "-np", "16", "-H", "node1:8,node2:8",
                                       "--network-interface=ib0", "--gloo-timeout-seconds=120", *argv]
  assert launch.command(launch.from_args(np=8), argv) == ["horovodrun", "-np", "8", *argv]
  assert launch.command(launch.from_args(), argv) == argv


def test_hostfile_lines(tmp_path):
  f = tmp_path / "hosts"
  f.write_text("# two nodes\nnode1 slots=8\nnode2:8  # the second\n\n")
  assert launch.from_args(hostfile=str(f)).hosts == (("node1", 8), ("node2", 8))
  f.write_text("node1 slots=8\nnode2 slots=eight\n")
  with pytest.raises(InputError, match=r"line 2: 'node2 slots=eight'.*positive integer"):
    launch.from_args(hostfile=str(f))


@pytest.mark.parametrize("kwargs, message", [
    (dict(hosts="node1:8,node2"), r"'node2': expected host:slots"),
    (dict(hosts="node1:8,node 2:8"), r"'node 2' is not a host name"),
    (dict(hosts="node1:0"), r"slots '0' must be a positive integer"),
    (dict(hosts="node1:8,node1:8"), r"host node1 is listed twice"),
    (dict(np=8, hosts="node1:8,node2:8"), r"--np=8 but --hosts \(16 slots\)"),
    (dict(hosts="node1:8", hostfile="f"), r"both given"),
    (dict(hostfile="/nonexistent/hosts"), r"--hostfile=/nonexistent/hosts: cannot read it"),
    (dict(hvd_args="-np 4"), r"'-np' is set by the driver"),
    (dict(launcher="pbs"), r"--launcher='pbs'"),
])
def test_bad_launch_options_name_what_is_wrong(kwargs, message):
  with pytest.raises(InputError, match=message):
    launch.from_args(**kwargs)


def test_slurm_launcher_outside_an_allocation_says_so(monkeypatch):
  monkeypatch.delenv("SLURM_JOB_ID", raising=False)
  with pytest.raises(InputError, match="not inside a Slurm allocation"):
    launch.from_args(launcher="slurm")


def test_tasks_per_node_expansion():
  assert launch.expand_tasks_per_node("8(x2),4", 3) == [8, 8, 4]
  with pytest.raises(InputError, match="does not describe 2 node"):
    launch.expand_tasks_per_node("8", 2)


# --- comparisons across hosts, on this host's real facts ----------------------------------------------------------
@pytest.fixture(scope="module")
def local_facts(tmp_path_factory):
  data = tmp_path_factory.mktemp("data")
  (data / "manifest.json").write_text('{"format": "x"}')
  out = subprocess.run([PYTHON, "-m", "tf_gp2bm.driver.host_probe", "facts", f"--path={data}"], env=_env(),
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
  line = next(l for l in out.stdout.splitlines() if l.startswith(host_probe.MARKER))
  return json.loads(line[len(host_probe.MARKER):]), str(data)


def test_a_differing_host_is_named_with_what_differs(local_facts):
  facts, data = local_facts
  other = json.loads(json.dumps(facts))
  other["versions"]["tensorflow"] = "2.19.0"
  other["data"][data] = None
  other["source"] = "0" * 16
  ordered = [("node1", facts, facts["time"]), ("node2", other, other["time"] - 5.0)]
  rows = {name: (status, detail) for name, status, detail in
          [hosts._same(ordered, "versions", lambda r: dict(r["versions"], python=r["python"])),
           hosts._same_source(ordered, facts["source"]), *hosts._data(ordered, [data]), hosts._clock(ordered)]}
  status, detail = rows["same versions on every host"]
  assert status == "FAIL" and "node2 has {'tensorflow': '2.19.0'}" in detail and "node1 has" in detail
  status, detail = rows["same source on every host"]
  assert status == "FAIL" and "node2 runs source 0000000000000000" in detail and "node1" not in detail
  status, detail = rows[f"data {data}"]
  assert status == "FAIL" and detail.startswith("missing on node2")
  status, detail = rows["clock offset to the driver"]
  assert status == "FAIL" and "node2 is +5.00s off" in detail


@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.usefixtures("horovod_required")
def test_preflight_on_two_loopback_hosts(tmp_path):
  data = tmp_path / "imagenet"
  data.mkdir()
  (data / "manifest.json").write_text('{"format": "x"}')
  config = cli.parse_args(["resnet", f"--resnet_data_dir={data}", "--bert_data_dir=/x",
                           f"--results_root={tmp_path / 'results'}"])
  rows = {name: (status, detail) for name, status, detail in
          hosts.preflight(launch.from_args(hosts=LOOPBACK), config)}
  assert rows["hosts answer"] == ("PASS", "2: localhost, 127.0.0.1")
  for name in ("same versions on every host", "same source on every host", f"data {data}",
               "clock offset to the driver", "/dev/shm free on every host", "results folder shared"):
    assert rows[name][0] == "PASS", (name, rows[name])
  assert "bert" not in json.dumps(rows)  # only the set's tasks' data is looked at
  assert hosts.drop_caches_detail(launch.from_args(hosts=LOOPBACK)) == (True, "page cache dropped on 2 hosts") \
      or os.geteuid() != 0


@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.usefixtures("horovod_required")
def test_unreachable_host_stops_preflight_naming_it(tmp_path):
  rows = hosts.preflight(launch.from_args(hosts="localhost:1,gp2bm-no-such-host.invalid:1"),
                         cli.parse_args(["resnet", f"--results_root={tmp_path / 'results'}"]))
  assert len(rows) == 1 and rows[0][:2] == ("hosts answer", "FAIL")
  assert "gp2bm-no-such-host.invalid" in rows[0][2] and "ssh" in rows[0][2]


# --- training across processes ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.usefixtures("horovod_required")
def test_horovod_two_hosts_on_loopback(demo_imagenet, tmp_path):
  cross = subprocess.run([HOROVODRUN, "--gloo", "-np", "2", "-H", LOOPBACK, PYTHON, "-c",
                          "import horovod.tensorflow as h; h.init(); "
                          "print('CROSS', h.rank(), h.local_rank(), h.cross_size(), h.local_size())"],
                         env=_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)
  seen = sorted(l.split("CROSS ", 1)[1] for l in cross.stdout.splitlines() if "CROSS " in l)
  assert seen == ["0 0 2 1", "1 0 2 1"], cross.stdout[-2000:] + cross.stderr[-2000:]
  out = tmp_path / "run"
  r = subprocess.run([HOROVODRUN, "--gloo", "-np", "2", "-H", LOOPBACK, PYTHON, "-m", "tf_gp2bm.train", *SMOKE,
                      f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--weights_digest", "--seed=11"],
                     env=_env(), capture_output=True, text=True, timeout=1500, cwd=ROOT)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert "horovod: rank 0/2" in r.stdout
  _check_one_log_same_weights(out, tmp_path)


# Host-side collectives of the multiworker runtime on two workers whose values differ (creation copied the chief's).
MULTIWORKER_COLLECTIVES = """
import json, tensorflow as tf
from tf_gp2bm.runtime.factory import create_runtime
rt = create_runtime("multiworker")
with rt.scope():
  v, w = tf.Variable(0.0), tf.Variable(0.0)
v.assign((rt.rank + 1) * 10.0)
w.assign(rt.rank + 1.0)
total = rt.all_sum_host([rt.rank + 1.0, 2.0])
rt.average_variables([w])
rt.broadcast_variables([v])
print("RESULT", json.dumps([rt.rank, rt.size, total, float(w.numpy()), float(v.numpy())]), flush=True)
"""


def collective_results(text):
  """{rank: (size, sums, averaged, broadcast)} from the RESULT lines of MULTIWORKER_COLLECTIVES."""
  rows = [json.loads(l.split("RESULT ", 1)[1]) for l in text.splitlines() if "RESULT " in l]
  return {r[0]: tuple(r[1:]) for r in rows}


EXPECTED_COLLECTIVES = {0: (2, [3.0, 4.0], 1.5, 10.0), 1: (2, [3.0, 4.0], 1.5, 10.0)}


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


@pytest.mark.slow
@pytest.mark.multiproc
def test_multiworker_two_processes_from_tf_config(demo_imagenet, tmp_path):
  out = tmp_path / "run"
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  procs = []
  for i in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
    procs.append(subprocess.Popen(
        [PYTHON, "-m", "tf_gp2bm.train", *SMOKE, "--distribution=multiworker", f"--data_dir={demo_imagenet}",
         f"--output_dir={out}", "--weights_digest", "--seed=13"], cwd=ROOT, env=_env(TF_CONFIG=tf_config),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outputs = [p.communicate(timeout=1500)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  assert "multiworker: rank 0/2" in outputs[0] and "[tf_gp2bm] success" in outputs[0]
  assert "[tf_gp2bm] success" not in outputs[1]  # the chief alone reports (and logs) the run
  _check_one_log_same_weights(out, tmp_path)
  assert json.loads((out / "run.json").read_text())["world_size"] == 2


@pytest.mark.slow
@pytest.mark.multiproc
def test_multiworker_collectives_from_tf_config(tmp_path):
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  procs = [subprocess.Popen([PYTHON, "-c", MULTIWORKER_COLLECTIVES], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(TF_CONFIG=json.dumps(
                                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})))
           for i in range(2)]
  text = "".join(p.communicate(timeout=900)[0] for p in procs)
  assert collective_results(text) == EXPECTED_COLLECTIVES, text[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("tf_config, message", [
    ('{"cluster": {"worker": ["127.0.0.1:1"]}', "TF_CONFIG is not a cluster description"),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', "TF_CONFIG names no worker"),
    ("", "needs TF_CONFIG (the cluster and this process's task) or a Slurm step"),
])
def test_multiworker_bad_cluster_is_bad_input(tf_config, message, tmp_path):
  env = _env(TF_CONFIG=tf_config)
  for key in ("SLURM_PROCID", "SLURM_STEP_NODELIST"):
    env.pop(key, None)
  r = subprocess.run([PYTHON, "-m", "tf_gp2bm.train", *SMOKE, "--distribution=multiworker", "--data_dir=/nonexistent",
                      f"--output_dir={tmp_path / 'run'}"], env=env, capture_output=True, text=True, timeout=600,
                     cwd=ROOT)
  assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
  assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.usefixtures("horovod_required")
def test_driver_runs_a_one_run_smoke_set_on_two_loopback_hosts(tmp_path):
  demo_data = os.path.join(ROOT, "results", "demo_data")  # the demo's own cache (gitignored), made once if absent
  cmd = [os.path.join(ROOT, "run_benchmark.sh"), "demo", "--tasks", "resnet", "--runs_resnet=1", f"--hosts={LOOPBACK}",
         f"--results_root={tmp_path / 'results'}", f"--demo_data_dir={demo_data}", "--force"]
  r = subprocess.run(cmd, env=_env(PYTHON=PYTHON), capture_output=True, text=True, timeout=2400, cwd=ROOT)
  assert r.returncode in (0, 3), r.stdout[-4000:] + r.stderr[-3000:]
  (set_dir,) = (tmp_path / "results").glob("*-demo")
  record = json.loads((set_dir / "runs" / "resnet" / "run_0" / "driver.json").read_text())
  assert record["command"][:5] == ["horovodrun", "-np", "2", "-H", LOOPBACK], record["command"]
  assert record["exit_code"] == 0 and record["compliance_passed"], record
  (pre,) = set_dir.glob("preflight-*.json")
  rows = {row["check"]: row for row in json.loads(pre.read_text())}
  for name in ("hosts answer", "same versions on every host", "same source on every host",
               "clock offset to the driver", "results folder shared"):
    assert rows[name]["status"] == "PASS", rows[name]
  ok, report = check_compliance(set_dir / "runs" / "resnet" / "run_0" / "mlperf.log", tmp_path)
  assert ok, report


def test_gpu_host_without_nccl_horovod_fails_preflight(local_facts):
  facts, _ = local_facts
  gpu_host = dict(facts, gpus=8, tf_gpus=8, nccl=False, error=None)
  cpu_tf = dict(facts, gpus=8, tf_gpus=0, nccl=True, error=None)
  run = launch.from_args(hosts="node1:8,node2:8")
  rows = dict((n, (s, d)) for n, s, d in hosts._gpus(run, [("node1", gpu_host, 0), ("node2", cpu_tf, 0)]))
  status, detail = rows["TensorFlow GPUs + Horovod NCCL"]
  assert status == "FAIL"
  assert "node1: Horovod was built without NCCL" in detail and "scripts/setup.sh" in detail
  assert "node2: nvidia-smi shows 8 GPU(s) but TensorFlow sees none" in detail
  assert rows["GPUs per host"] == ("PASS", "node1: 8, node2: 8")
  short = hosts._gpus(launch.from_args(hosts="node1:8"), [("node1", dict(gpu_host, gpus=4, nccl=True), 0)])
  assert short[0] == ("GPUs per host", "FAIL", "node1 has 4 GPU(s) for 8 process(es)")


def test_slurm_step_argv_with_and_without_a_container():
  from tf_gp2bm.driver import srun
  trainer = [PYTHON, "-m", "tf_gp2bm.train", "--task=resnet"]
  plain = launch.Launch("slurm", 4, (("n1", 2), ("n2", 2)), ("--label",))
  assert launch.command(plain, trainer) == [PYTHON, "-m", "tf_gp2bm.driver.srun", "--np=4", "--ntasks_per_node=2",
                                            "--label", "--", *trainer]
  assert srun.step_command(plain, trainer, 2) == ["srun", "--nodes=2", "--ntasks=4", "--ntasks-per-node=2",
                                                  "--distribution=block", "--kill-on-bad-exit=1", "--label", *trainer]
  # In an image the image's python runs (this machine's interpreter path means nothing there).
  pyxis = launch.Launch("slurm", 2, (("n1", 2),), ("--container-image=acme/tf",))
  assert srun.step_command(pyxis, trainer, 2)[-5:] == ["--container-image=acme/tf", "python", *trainer[1:]]
  sif = launch.Launch("slurm", 2, (("n1", 2),), ("--apptainer=/images/tf.sif",))
  assert srun.step_command(sif, trainer, 2)[-8:] == ["apptainer", "exec", "--nv", "/images/tf.sif", "python",
                                                     *trainer[1:]]
