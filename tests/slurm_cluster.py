"""A real one-node Slurm on this machine for the Slurm tests: Debian's slurm-wlm + munge, started privately.

`python tests/slurm_cluster.py up|down|status` or `SlurmCluster().up()` from a fixture. Everything lives in one
folder (config, state, logs, munge key and socket) with its own ports, so a machine's real Slurm is never touched;
clients find it through SLURM_CONF. Needs root (the daemons run as root) and apt-get when the packages are absent.
Any step that fails raises SlurmUnavailable with the reason and the daemon log tail: the tests fail with it.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

PACKAGES = ("slurm-wlm", "munge")  # slurmctld, slurmd, the client tools and munged
BINARIES = ("slurmctld", "slurmd", "sbatch", "srun", "sinfo", "scontrol", "munged")
DEFAULT_ROOT = os.path.join("/tmp", "gp2bm_slurm")
CTLD_PORT, SLURMD_PORT = 16817, 16818  # not Slurm's defaults: a real install on the machine keeps its ports


class SlurmUnavailable(RuntimeError):
  """The cluster could not be installed or started; the message says which step and why."""


class SlurmCluster:

  def __init__(self, root=DEFAULT_ROOT, cpus=None):
    self.root = root
    self.cpus = cpus or max(2, os.cpu_count() or 2)
    self.node = socket.gethostname().split(".")[0]
    self.conf = os.path.join(root, "slurm.conf")

  # ------------------------------------------------------------------------------------------- environment
  @property
  def env(self):
    """Environment for client commands (sbatch, srun, sinfo) that talk to this cluster."""
    return dict(os.environ, SLURM_CONF=self.conf)

  def path(self, *parts):
    return os.path.join(self.root, *parts)

  # ------------------------------------------------------------------------------------------------ install
  def install(self):
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if not missing:
      return
    if os.geteuid() != 0:
      raise SlurmUnavailable(f"{', '.join(missing)} missing and not root: apt-get install {' '.join(PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
      out = subprocess.run(cmd, capture_output=True, text=True, env=env)
      if out.returncode != 0:
        raise SlurmUnavailable(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
    still = [b for b in BINARIES if shutil.which(b) is None]
    if still:
      raise SlurmUnavailable(f"after installing {' '.join(PACKAGES)}, still missing: {', '.join(still)}")

  # ------------------------------------------------------------------------------------------------- config
  def write_config(self):
    for d in ("state", "spool", "log", "munge"):
      os.makedirs(self.path(d), exist_ok=True)
    os.chmod(self.path("munge"), 0o700)
    key = self.path("munge", "munge.key")
    if not os.path.exists(key):
      with open(key, "wb") as f:
        f.write(os.urandom(1024))
      os.chmod(key, 0o600)
    conf = f"""# written by tests/slurm_cluster.py: a private one-node cluster for the tests
ClusterName=gp2bm-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.path("munge", "munge.socket")}
StateSaveLocation={self.path("state")}
SlurmdSpoolDir={self.path("spool")}
SlurmctldPidFile={self.path("slurmctld.pid")}
SlurmdPidFile={self.path("slurmd.pid")}
SlurmctldLogFile={self.path("log", "slurmctld.log")}
SlurmdLogFile={self.path("log", "slurmd.log")}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=30
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""
    with open(self.conf, "w") as f:
      f.write(conf)

  # -------------------------------------------------------------------------------------------------- start
  def _pid_alive(self, name):
    try:
      with open(self.path(f"{name}.pid")) as f:
        pid = int(f.read().strip())
    except (OSError, ValueError):
      return None
    return pid if _alive(pid) else None

  def _log_tail(self, name, n=15):
    try:
      with open(self.path("log", f"{name}.log")) as f:
        return "".join(f.readlines()[-n:])
    except OSError:
      return "(no log)"

  def _start(self, name, cmd):
    if self._pid_alive(name):
      return
    out = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
    if out.returncode != 0:
      raise SlurmUnavailable(f"{' '.join(cmd)} exited {out.returncode}: {(out.stdout + out.stderr).strip()[-600:]}"
                             f"\n{name} log:\n{self._log_tail(name)}")

  def up(self, timeout=120):
    """Installs if needed, (re)writes the config and starts munged, slurmctld and slurmd; waits for an idle node."""
    self.install()
    if self.ready():
      return self
    self.write_config()
    self._start("munged", ["munged", "--force", f"--key-file={self.path('munge', 'munge.key')}",
                           f"--socket={self.path('munge', 'munge.socket')}", f"--pid-file={self.path('munged.pid')}",
                           f"--log-file={self.path('log', 'munged.log')}",
                           f"--seed-file={self.path('munge', 'munged.seed')}"])
    self._start("slurmctld", ["slurmctld", "-f", self.conf])
    self._start("slurmd", ["slurmd", "-f", self.conf, "-N", self.node])
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
      state = self.node_state()
      if state.startswith(("idle", "mixed", "alloc")):
        return self
      if "drain" in state or "down" in state:
        subprocess.run(["scontrol", "update", f"NodeName={self.node}", "State=RESUME"], env=self.env,
                       capture_output=True)
      time.sleep(2)
    raise SlurmUnavailable(f"node {self.node} not idle after {timeout}s (state {state!r})\nslurmctld log:\n"
                           f"{self._log_tail('slurmctld')}\nslurmd log:\n{self._log_tail('slurmd')}")

  def node_state(self):
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T %E"], capture_output=True, text=True, env=self.env)
    return (out.stdout.strip() or out.stderr.strip()).lower()

  def ready(self):
    return all(self._pid_alive(n) for n in ("munged", "slurmctld", "slurmd")) and \
        self.node_state().startswith(("idle", "mixed", "alloc"))

  def down(self, timeout=30):
    """Stops the daemons and waits until they are gone: a daemon still saving its state would read as running to
    an up() right after, which would then not start it, and the node would never register."""
    pids = [pid for pid in (self._pid_alive(name) for name in ("slurmd", "slurmctld", "munged")) if pid]
    for pid in pids:
      os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    for pid in pids:
      while _alive(pid) and time.time() < deadline:
        time.sleep(0.2)
      if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _alive(pid):
  """Running, not a zombie: a daemon's parent is init, and a container's init may never reap it."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rpartition(")")[2].split()[0] != "Z"
  except OSError:
    return False


def main(argv):
  what = argv[1] if len(argv) > 1 else "up"
  cluster = SlurmCluster()
  if what == "up":
    cluster.up()
    print(f"slurm up: SLURM_CONF={cluster.conf}; node {cluster.node}: {cluster.node_state()}")
  elif what == "down":
    cluster.down()
  else:
    print(cluster.node_state())
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main(sys.argv))
  except SlurmUnavailable as e:
    print(f"slurm unavailable: {e}", file=sys.stderr)
    sys.exit(1)
