"""The set's tf.data service (--data_service_hosts): planned from the options, started once per driver session before
the first run's clock, over the same launcher as the ranks, and stopped when the set ends, fails or is interrupted.

The first host runs the dispatcher (`python -m tf_gp2bm.data_service dispatcher`), every host runs the workers, each
on the next port. Local launches start them as plain processes (the hosts must be this machine), host lists through
`horovodrun -np 1 -H host:1` (its ssh settings from --hvd_args apply), Slurm through `srun --nodes=1 --nodelist=HOST
--overlap`. Each server's output goes to data_service/<role>.log in the set folder; a server that exits or does not
print data_service.READY in time is a preflight failure naming its host and role. Only the tasks whose Config has a
`data_service` field get `--data_service=DISPATCHER:PORT` (the others keep their own input).
"""
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from tf_gp2bm import data_service
from tf_gp2bm.errors import InputError
from tf_gp2bm.files import read_json, repo_root, write_json_atomic
from tf_gp2bm.tasks import registry

from . import launch as launch_mod
from . import srun

FIELD = "data_service"     # the Config field (trainer flag) of a task that can read its train input from the service
LOG_DIR = "data_service"   # in the set folder: one log per server, servers.json
SERVERS_JSON = "servers.json"
START_TIMEOUT_S = 600      # TensorFlow import and the fused image op's build and self-check, on a busy host
STOP_GRACE_S = 15
CHECK = "tf.data service"  # the preflight row


class StartFailed(RuntimeError):
  """A server exited or did not become ready; str() names its host and role with the tail of its output."""


def service_tasks(tasks):
  """The tasks among `tasks` whose Config has the data_service field (asked of the registry, not by name)."""
  return tuple(t for t in tasks if FIELD in {f.name for f in dataclasses.fields(registry.config_class(t))})


def this_machine_names():
  return {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}


@dataclasses.dataclass(frozen=True)
class Server:
  role: str    # dispatcher | worker N (N counts from 1 on each host)
  host: str
  port: int
  args: tuple  # after `python -m tf_gp2bm.data_service`

  @property
  def log_name(self):
    return "dispatcher.log" if self.role == "dispatcher" else f"worker-{self.host}-{self.role.split()[1]}.log"


@dataclasses.dataclass(frozen=True)
class Plan:
  options: object  # config.DataServiceOptions
  tasks: tuple     # the set's tasks that read from the service
  others: tuple    # the set's tasks that keep their own input
  servers: tuple

  @property
  def address(self):
    return self.options.address

  def describe(self):
    hosts = self.options.host_names
    workers = len(self.servers) - 1
    return (f"dispatcher {self.address}, {workers} worker(s) on {len(hosts)} host(s) "
            f"({', '.join(hosts)}; {self.options.workers_per_host} per host)")

  def scope(self):
    """Which runs use it, for the terminal and the reports."""
    line = f"train input of the {', '.join(self.tasks)} runs"
    if self.others:
      line += f"; {', '.join(self.others)} runs read their own input (no data_service in their Config)"
    return line


def plan(options, tasks, run_launch):
  """The servers for options (a DataServiceOptions or None) under run_launch; InputError (exit 2) names what is
  wrong: a bad host name, a host listed twice, a set without a task that reads from the service, a host a local
  launch cannot reach."""
  if options is None:
    return None
  where = f"--data_service_hosts={options.hosts}"
  hosts = options.host_names
  seen = set()
  for h in hosts:
    launch_mod.check_host_name(h, where)
    if h in seen:
      raise InputError(f"{where}: host {h} is listed twice (give it once; --data_service_workers_per_host sets the "
                       "workers of each host)")
    seen.add(h)
  users = service_tasks(tasks)
  if not users:
    able = ", ".join(service_tasks(registry.names())) or "none"
    raise InputError(f"{where}: no task of this set ({', '.join(tasks)}) reads from the tf.data service (tasks "
                     f"whose config has --data_service: {able})")
  if run_launch.kind == "local":
    local = this_machine_names()
    for h in hosts:
      if h not in local:
        raise InputError(f"{where}: a local launch cannot reach {h}: it starts the dispatcher and workers as "
                         "processes on this machine (localhost, 127.0.0.1 or its own name); give --hosts/--hostfile "
                         "or --launcher=slurm to start them on other hosts")
  servers = [Server("dispatcher", hosts[0], options.port, ("dispatcher", f"--port={options.port}"))]
  for h in hosts:
    for n in range(1, options.workers_per_host + 1):
      port = options.port + n
      servers.append(Server(f"worker {n}", h, port, ("worker", f"--dispatcher={options.address}", f"--port={port}",
                                                     f"--worker_host={h}")))
  return Plan(options, users, tuple(t for t in tasks if t not in users), tuple(servers))


def command(server, run_launch):
  """The argv starting one server on its host through the ranks' launcher."""
  argv = [sys.executable, "-m", "tf_gp2bm.data_service", *server.args]
  if run_launch.kind == "hosts":
    return ["horovodrun", "-np", "1", "-H", f"{server.host}:1", *run_launch.hvd_args, *argv]
  if run_launch.kind == "slurm":
    # The ranks' steps exclude service-only nodes; this step names its node instead.
    apptainer, srun_args = srun.split_args([w for w in run_launch.hvd_args if not w.startswith("--exclude=")])
    return ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={server.host}", "--overlap", *srun_args,
            *srun.task_argv(argv, srun_args, apptainer)]
  return argv


class _Process:
  """One started server: its launcher process, output drained into its log, READY noticed."""

  def __init__(self, server, argv, log_path):
    self.server, self.argv, self.log_path = server, argv, log_path
    self.ready = threading.Event()
    self.log = open(log_path, "ab")
    env = launch_mod.tool_env(dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"))
    try:
      self.proc = subprocess.Popen(argv, cwd=repo_root(), env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
      self.log.close()
      raise StartFailed(f"{self.label}: cannot start {argv[0]}: {e.strerror or e}") from None
    self.reader = threading.Thread(target=self._drain, daemon=True, name=f"data_service-{server.log_name}")
    self.reader.start()

  @property
  def label(self):
    return f"{self.server.role} on {self.server.host}:{self.server.port}"

  def _drain(self):
    # Keeps reading after READY: a full pipe would block the server.
    for line in iter(self.proc.stdout.readline, b""):
      try:
        self.log.write(line)
        self.log.flush()
      except (OSError, ValueError):
        pass
      if data_service.READY.encode() in line:
        self.ready.set()

  def tail(self, n=6):
    """The last lines of its output, without a traceback's frames (the error line and gRPC's reason stay)."""
    try:
      with open(self.log_path, errors="replace") as f:
        lines = [l.rstrip()[:400] for l in f if l.strip() and not l.startswith((" ", "\t", "Traceback"))]
    except OSError:
      return "no output"
    return " | ".join(lines[-n:])[-1500:] or "no output"

  def signal_all(self, sig, family):
    for pid in family:  # horovodrun's and srun's children may sit in sessions of their own
      try:
        os.kill(pid, sig)
      except (ProcessLookupError, PermissionError):
        pass
    try:
      os.killpg(self.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
      pass

  def family(self):
    try:
      import psutil  # a Horovod dependency
      return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
    except Exception:  # gone already, or no psutil: the process group is still signalled
      return []


class Running:
  """The started service of one driver session; stop() ends every server (idempotent)."""

  def __init__(self, service_plan, procs, log_dir, ready_s):
    self.plan, self.procs, self.log_dir, self.ready_s = service_plan, procs, log_dir, ready_s

  def summary(self):
    return f"{self.plan.describe()} ready in {self.ready_s:.0f} s"

  def row(self):
    return {"check": CHECK, "status": "PASS", "detail": f"{self.summary()}; {self.plan.scope()}"}

  def stop(self):
    stop_all(self.procs)
    self.procs = []


def stop_all(procs, grace_s=STOP_GRACE_S):
  """SIGTERM to every server (and its launcher's children), SIGKILL to those still there after grace_s."""
  families = {p: p.family() for p in procs}
  for p in procs:
    p.signal_all(signal.SIGTERM, families[p])
  deadline = time.monotonic() + grace_s
  for p in procs:
    try:
      p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      pass
  for p in procs:
    alive = [pid for pid in families[p] if _alive(pid)]
    if p.proc.poll() is None or alive:
      p.signal_all(signal.SIGKILL, alive)
      p.proc.wait()
    p.reader.join(timeout=5)
    p.log.close()


def _alive(pid):
  try:
    os.kill(pid, 0)
  except (ProcessLookupError, PermissionError):
    return False
  return True


def kill_leftovers(log_dir):
  """Kills the servers a previous driver of this set left running (it died by SIGKILL); returns how many."""
  path = os.path.join(log_dir, SERVERS_JSON)
  if not os.path.exists(path):
    return 0
  killed = 0
  for entry in read_json(path, "tf.data service servers").get("servers", []):
    pgid = entry.get("pgid")
    try:
      with open(f"/proc/{pgid}/cmdline", "rb") as f:
        if b"tf_gp2bm" not in f.read():
          continue  # the id was reused by something else
      os.killpg(pgid, signal.SIGKILL)
      killed += 1
    except (OSError, TypeError):
      continue
  return killed


def start(service_plan, run_launch, log_dir, timeout_s=START_TIMEOUT_S):
  """Starts the dispatcher, then every worker, and waits for each one's READY line. Returns Running; raises
  StartFailed (every server already started is stopped) naming the host and role with the tail of its output."""
  os.makedirs(log_dir, exist_ok=True)
  kill_leftovers(log_dir)
  t0 = time.monotonic()
  procs = []
  try:
    dispatcher = service_plan.servers[0]
    procs.append(_Process(dispatcher, command(dispatcher, run_launch), os.path.join(log_dir, dispatcher.log_name)))
    _record(log_dir, procs)
    _wait_ready(procs, t0, timeout_s)  # the workers register with it
    for server in service_plan.servers[1:]:
      procs.append(_Process(server, command(server, run_launch), os.path.join(log_dir, server.log_name)))
    _record(log_dir, procs)
    _wait_ready(procs, t0, timeout_s)
  except BaseException:
    stop_all(procs)
    raise
  return Running(service_plan, procs, log_dir, time.monotonic() - t0)


def _record(log_dir, procs):
  write_json_atomic(os.path.join(log_dir, SERVERS_JSON), {"servers": [
      {"role": p.server.role, "host": p.server.host, "port": p.server.port, "pgid": p.proc.pid,
       "command": p.argv, "log": os.path.basename(p.log_path)} for p in procs]})


def _wait_ready(procs, t0, timeout_s):
  while True:
    waiting = [p for p in procs if not p.ready.is_set()]
    if not waiting:
      return
    for p in waiting:
      code = p.proc.poll()
      if code is not None:
        p.reader.join(timeout=5)
        if not p.ready.is_set():
          raise StartFailed(f"{p.label}: exited with {code} before it served; its output "
                            f"({os.path.basename(p.log_path)}): {p.tail()}")
    if time.monotonic() > t0 + timeout_s:
      p = waiting[0]
      raise StartFailed(f"{p.label}: not ready after {timeout_s:g} s; its output "
                        f"({os.path.basename(p.log_path)}): {p.tail()}")
    time.sleep(0.2)


def failed_row(error):
  return {"check": CHECK, "status": "FAIL", "detail": str(error)}


def service_only_launch(service_plan, run_launch):
  """A Launch reaching the service's hosts that run no rank (their page cache is dropped before each run too: the
  workers read the records there), or None when every service host runs ranks or the launch is local."""
  only = [h for h in service_plan.options.host_names if h not in run_launch.host_names]
  if run_launch.kind == "local" or not only:
    return None
  if run_launch.kind == "slurm":
    return launch_mod.Launch("slurm", len(only), tuple((h, 1) for h in only), (f"--nodelist={','.join(only)}",))
  return launch_mod.Launch("hosts", len(only), tuple((h, 1) for h in only), run_launch.hvd_args)


def sw_note(service_plan):
  """The system description's words for it (sw_notes: a free-form field of the MLPerf system description)."""
  return f"tf.data service for the {', '.join(service_plan.tasks)} train input: {service_plan.describe()}"
