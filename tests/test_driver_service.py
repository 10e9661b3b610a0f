"""The driver's tf.data service (--data_service_hosts, driver/service.py), end to end through run_benchmark.sh with real
dispatcher and worker processes on loopback: a ResNet demo set interrupted while the service runs (no server left)
and resumed to compliant logs read through the service; a dispatcher port already taken (a preflight failure
naming host and role); hosts a local launch cannot reach and sets without a task that reads from the service (exit 2
before anything runs); the same set over a horovodrun host list."""
import json
import os
import signal
import socket

import pytest

from tf_gp2bm.driver import cli, flow, launch, service
from tf_gp2bm.errors import InputError

from conftest import require_horovod
from test_faults_driver import demo_set_argv, driver, start_driver, wait_for


def _free_port(span=3):
  """A port with the next `span` ports free too (dispatcher and workers)."""
  for _ in range(50):
    with socket.socket() as s:
      s.bind(("", 0))
      port = s.getsockname()[1]
    if port + span < 65536 and all(_port_free(port + i) for i in range(1, span + 1)):
      return port
  raise AssertionError("no free port range")


def _port_free(port):
  with socket.socket() as s:
    try:
      s.bind(("", port))
      return True
    except OSError:
      return False


def _servers_alive(port):
  """Processes still running a data_service server of this test (its ports are unique to it)."""
  import psutil
  found = []
  for p in psutil.process_iter(["pid", "cmdline"]):
    cmd = " ".join(p.info["cmdline"] or [])
    if "tf_gp2bm.data_service" in cmd and (f"--port={port}" in cmd or f":{port}" in cmd):
      found.append((p.info["pid"], cmd))
  return found


def _pids_gone(servers_json):
  recorded = json.loads(servers_json.read_text())["servers"]
  return [e for e in recorded if os.path.exists(f"/proc/{e['pgid']}")]


def _no_demo_data_argv(tmp_path, *extra):
  """A demo set whose demo data is marked generated (nothing is generated): only the driver's checks run."""
  demo = tmp_path / "demo_data"
  for task in ("resnet", "bert"):
    (demo / task).mkdir(parents=True, exist_ok=True)
    (demo / task / flow.DEMO_DONE).touch()
  return ["demo", f"--demo_data_dir={demo}", f"--results_root={tmp_path / 'results'}", *extra]


@pytest.mark.parametrize("extra, says", [
    (("--tasks", "resnet", "--data_service_hosts=gp2bm-no-such-host.invalid"),
     "a local launch cannot reach gp2bm-no-such-host.invalid"),
    (("--tasks", "resnet", "--data_service_hosts=localhost,no de"), "'no de' is not a host name"),
    (("--tasks", "bert", "--data_service_hosts=localhost"), "no task of this set (bert) reads from the tf.data service"),
    (("--tasks", "resnet", "--data_service_hosts=localhost", "--data_service_workers_per_host=0"),
     "--data_service_workers_per_host=0: must be at least 1")])
def test_bad_service_options_are_bad_input_before_anything_runs(tmp_path, extra, says):
  out = driver(*_no_demo_data_argv(tmp_path, *extra), timeout=120)
  assert out.returncode == 2 and says in out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
  assert "Traceback" not in out.stderr and not list((tmp_path / "results").glob("*-demo"))


def test_only_tasks_whose_config_has_the_field_get_the_service():
  config = cli.parse_args(["demo", "--data_service_hosts=127.0.0.1,localhost", "--data_service_port=6000",
                           "--data_service_workers_per_host=2"])
  plan = service.plan(config.data_service, config.tasks, flow.make_launch(config))
  assert plan.tasks == ("resnet",) and plan.others == ("bert",) and plan.address == "127.0.0.1:6000"
  assert [(s.role, s.host, s.port) for s in plan.servers] == [
      ("dispatcher", "127.0.0.1", 6000), ("worker 1", "127.0.0.1", 6001), ("worker 2", "127.0.0.1", 6002),
      ("worker 1", "localhost", 6001), ("worker 2", "localhost", 6002)]
  assert "bert runs read their own input" in plan.scope()
  record = config.record(1, "box")
  assert cli.cfg.SetRecord.from_record(record.to_record()) == record  # set.json keeps it, typed
  assert record.to_record()["data_service"] == {"hosts": "127.0.0.1,localhost", "port": 6000, "workers_per_host": 2}
  # system.json's free-form sw_notes names it, after the vendor's own words
  config = cli.parse_args(["demo", "--data_service_hosts=localhost", "--system_field=sw_notes=ACME notes"])
  run_launch = flow.make_launch(config)
  desc = flow.build_sysdesc(config, "box", run_launch, service.plan(config.data_service, config.tasks, run_launch))
  assert desc["sw_notes"] == ("ACME notes; tf.data service for the resnet train input: dispatcher localhost:5050, "
                              "1 worker(s) on 1 host(s) (localhost; 1 per host)")


def test_service_processes_go_through_the_ranks_launcher():
  hosts_launch = launch.from_args(hosts="n1:8,n2:8", hvd_args="--ssh-port=2222")
  options = cli.cfg.DataServiceOptions("cpu1,cpu2")
  plan = service.plan(options, ("resnet",), hosts_launch)
  cmd = service.command(plan.servers[-1], hosts_launch)
  assert cmd[:6] == ["horovodrun", "-np", "1", "-H", "cpu2:1", "--ssh-port=2222"]
  assert cmd[-4:] == ["worker", "--dispatcher=cpu1:5050", "--port=5051", "--worker_host=cpu2"]
  slurm = launch.Launch("slurm", 16, (("n1", 8), ("n2", 8)), ("--container-image=img", "--exclude=cpu1,cpu2"))
  cmd = service.command(plan.servers[0], slurm)
  assert cmd[:5] == ["srun", "--nodes=1", "--ntasks=1", "--nodelist=cpu1", "--overlap"]
  assert "--container-image=img" in cmd and not any(w.startswith("--exclude") for w in cmd)
  assert cmd[cmd.index("-m") - 1] == "python"  # the image's interpreter inside the container
  with pytest.raises(InputError, match="a local launch cannot reach cpu1"):
    service.plan(options, ("resnet",), launch.from_args())


@pytest.mark.slow
@pytest.mark.multiproc
def test_interrupted_set_stops_the_service_and_the_resumed_set_reads_through_it(demo_imagenet, tmp_path):
  port = _free_port()
  argv = demo_set_argv(tmp_path, demo_imagenet) + ["--data_service_hosts=localhost",
                                                   "--data_service_workers_per_host=2",
                                                   f"--data_service_port={port}"]
  proc = start_driver(argv)
  # Stopped as run 0 starts: the service is up (started before the first run) and the short run cannot finish first.
  rec = lambda: next(iter((tmp_path / "results").glob("*-demo/runs/resnet/run_0/driver.json")), None)  # noqa: E731
  wait_for(rec, proc, "run 0 started")
  set_dir = rec().parents[3]
  servers_json = set_dir / "data_service" / "servers.json"
  assert len(json.loads(servers_json.read_text())["servers"]) == 3 and _servers_alive(port)
  proc.send_signal(signal.SIGINT)
  first, _ = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGINT, first[-3000:]
  assert not _pids_gone(servers_json) and not _servers_alive(port), first[-3000:]
  assert f"tf.data service: dispatcher localhost:{port}, 2 worker(s) on 1 host(s)" in first and "ready in" in first

  again = driver(*argv, timeout=900)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert "continuing set" in again.stdout and "ready in" in again.stdout
  assert not _pids_gone(servers_json) and not _servers_alive(port)  # stopped when the set ended
  run0 = set_dir / "runs" / "resnet" / "run_0"
  rec = json.loads((run0 / "driver.json").read_text())
  assert rec["finished"] and rec["compliance_passed"] and rec["data_service"] == f"localhost:{port}", rec
  assert f"--data_service=localhost:{port}" in rec["command"]
  assert f"train images: from the tf.data service at localhost:{port}" in (run0 / "console.log").read_text()
  system = json.loads((set_dir / "system.json").read_text())
  assert f"tf.data service for the resnet train input: dispatcher localhost:{port}" in system["sw_notes"]
  for name in ("dispatcher.log", "worker-localhost-1.log", "worker-localhost-2.log"):
    assert "data_service ready" in (set_dir / "data_service" / name).read_text()
  summary = json.loads((set_dir / "summary.json").read_text())
  assert summary["tasks"]["resnet"]["runs"][0]["data_service"] == f"localhost:{port}"
  assert "tf.data service started by the driver" in (set_dir / "summary.md").read_text()
  (pre, *_) = sorted(set_dir.glob("preflight-*.json"))
  assert any(r["check"] == service.CHECK and r["status"] == "PASS" for r in json.loads(pre.read_text()))


@pytest.mark.slow
@pytest.mark.multiproc
def test_dispatcher_port_taken_is_a_preflight_failure_naming_host_and_role(demo_imagenet, tmp_path):
  with socket.socket() as taken:
    taken.bind(("", 0))
    taken.listen()
    port = taken.getsockname()[1]
    out = driver(*demo_set_argv(tmp_path, demo_imagenet), "--data_service_hosts=localhost", f"--data_service_port={port}",
                 timeout=600)
  assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
  assert f"tf.data service FAILED: dispatcher on localhost:{port}: exited with 1 before it served" in out.stdout
  assert "Address already in use" in out.stdout and "nothing was run" in out.stdout
  (set_dir,) = (tmp_path / "results").glob("*-demo")
  assert not (set_dir / "runs").exists() and (set_dir / "set.json").exists()
  (pre,) = set_dir.glob("preflight-*.json")
  row = [r for r in json.loads(pre.read_text()) if r["check"] == service.CHECK]
  assert row and row[0]["status"] == "FAIL" and "dispatcher on localhost" in row[0]["detail"]
  assert not _servers_alive(port)


@pytest.mark.slow
@pytest.mark.multiproc
def test_service_over_a_horovodrun_host_list(demo_imagenet, tmp_path):
  require_horovod()
  port = _free_port()
  argv = demo_set_argv(tmp_path, demo_imagenet) + ["--hosts=localhost:1,127.0.0.1:1",
                                                   "--data_service_hosts=127.0.0.1", f"--data_service_port={port}"]
  out = driver(*argv, timeout=1200)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  (set_dir,) = (tmp_path / "results").glob("*-demo")
  servers = json.loads((set_dir / "data_service" / "servers.json").read_text())["servers"]
  assert all(s["command"][:5] == ["horovodrun", "-np", "1", "-H", "127.0.0.1:1"] for s in servers), servers
  rec = json.loads((set_dir / "runs" / "resnet" / "run_0" / "driver.json").read_text())
  assert rec["command"][:5] == ["horovodrun", "-np", "2", "-H", "localhost:1,127.0.0.1:1"]
  assert rec["compliance_passed"] and rec["data_service"] == f"127.0.0.1:{port}", rec
  assert not _servers_alive(port)


@pytest.mark.slow
@pytest.mark.multiproc
def test_service_starts_and_stops_through_srun(slurm, tmp_path):
  """Under a real one-node Slurm (tests/slurm_cluster.py): the dispatcher and a worker are srun steps on the listed
  node (--overlap, beside the ranks' allocation), ready, then stopped with nothing left."""
  from test_slurm import _in_allocation
  cluster = slurm
  port = _free_port()
  r = _in_allocation(cluster, "from tf_gp2bm.driver import cli, launch, service\n"
                              f"run = launch.from_args(launcher='slurm', service_hosts=('{cluster.node}',))\n"
                              "print('LAUNCH', run)\n"
                              f"options = cli.cfg.DataServiceOptions('{cluster.node}', {port}, 1)\n"
                              "plan = service.plan(options, ('resnet',), run)\n"
                              f"running = service.start(plan, run, '{tmp_path / 'ds'}', timeout_s=300)\n"
                              "print('READY', running.summary())\n"
                              "running.stop()\n")
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  # Every node of the allocation is a service host: the ranks keep it (no --exclude).
  assert f"hosts=(('{cluster.node}', 2),), hvd_args=())" in r.stdout
  assert f"READY dispatcher {cluster.node}:{port}, 1 worker(s) on 1 host(s)" in r.stdout
  servers = json.loads((tmp_path / "ds" / "servers.json").read_text())["servers"]
  assert [s["command"][:5] for s in servers] == [["srun", "--nodes=1", "--ntasks=1", f"--nodelist={cluster.node}",
                                                  "--overlap"]] * 2
  assert "data_service ready" in (tmp_path / "ds" / f"worker-{cluster.node}-1.log").read_text()
  assert not _servers_alive(port)


@pytest.mark.slow
def test_a_deterministic_flagfile_fails_the_dry_run_with_the_service(tmp_path):
  """The preflight dry run gets the --data_service the runs will get, so the trainer's refusal of --deterministic
  with the service stops the set there (a failed dry run: exit 2, also with --force)."""
  from conftest import ROOT
  from tf_gp2bm.driver import preflight
  flags = tmp_path / "deterministic.flags"
  flags.write_text(f"--flagfile={ROOT}/flags/resnet/smoke.flags\n--deterministic\n")
  ((check, status, detail),) = preflight.dry_run("resnet", str(flags), 1, extra=["--data_service=localhost:5050"])
  assert status == "FAIL" and "--data_service=localhost:5050 with --deterministic" in detail, detail
  assert preflight.dry_run("resnet", str(flags), 1)[0][1] == "PASS"  # without the service the flagfile is fine
