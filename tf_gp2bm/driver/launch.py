"""Where the processes of one training run go: this machine, a list of hosts, or a Slurm allocation.

`from_args` turns the driver's --np/--hosts/--hostfile/--hvd_args/--launcher into a `Launch`; `command` turns a
Launch and the trainer's argv into the argv that starts one run. The engines are Horovod's own (horovodrun, its
rendezvous server) and Slurm's srun; nothing here starts a process. TF-free so the driver CLI stays fast.
"""
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys

from tf_gp2bm.errors import InputError

KINDS = ("local", "hosts", "slurm")
LAUNCHERS = ("local", "slurm")
# A host name, an IPv4 address or a bracket-less IPv6 literal is all horovodrun's -H accepts.
_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# The options the driver sets itself; letting --hvd_args repeat them would run something else than the set says.
_RESERVED = ("-np", "--num-proc", "-H", "--hosts", "-hostfile", "--hostfile", "--host-discovery-script",
             "--ntasks", "-n", "--nodes", "-N")


@dataclasses.dataclass(frozen=True)
class Launch:
  """kind: local (horovodrun on this machine, or one plain process), hosts (horovodrun -H), slurm (srun).

  hosts: ((host, slots), ...) in rank order (empty for local); hvd_args: extra launcher arguments, passed through
  verbatim (horovodrun options such as --gloo-timeout-seconds or --network-interface for hosts; srun options such
  as --container-image for slurm).
  """
  kind: str
  np: int
  hosts: tuple = ()
  hvd_args: tuple = ()

  @property
  def host_names(self):
    return tuple(h for h, _ in self.hosts) or ("localhost",)

  @property
  def num_hosts(self):
    return max(1, len(self.hosts))

  @property
  def hosts_arg(self):
    """horovodrun's -H value: h1:8,h2:8."""
    return ",".join(f"{h}:{s}" for h, s in self.hosts)

  def describe(self):
    if self.kind == "local":
      return f"{self.np} process(es) on this machine"
    where = "Slurm allocation" if self.kind == "slurm" else "hosts"
    return f"{self.np} processes on {self.num_hosts} {where} ({self.hosts_arg})"


def parse_hosts(text, source="--hosts"):
  """'h1:8,h2:8' -> (('h1', 8), ('h2', 8)); every error names the bad entry."""
  entries = [e.strip() for e in text.split(",")]
  if not all(entries):
    raise InputError(f"{source}={text!r}: empty host entry (expected host:slots[,host:slots...])")
  return tuple(_parse_host_entry(e, f"{source}: {e!r}") for e in entries)


def _parse_host_entry(entry, where):
  host, sep, slots = entry.rpartition(":")
  if not sep:
    raise InputError(f"{where}: expected host:slots (the number of processes, one per GPU, e.g. node1:8)")
  return _checked_host(host, slots, where)


def check_host_name(host, where):
  """host, or InputError naming `where` when it is no host name or IP address horovodrun/srun accept."""
  if not _HOST_RE.match(host or ""):
    raise InputError(f"{where}: {host!r} is not a host name or IP address")
  return host


def _checked_host(host, slots, where):
  check_host_name(host, where)
  if not slots.isdigit() or int(slots) < 1:
    raise InputError(f"{where}: slots {slots!r} must be a positive integer (processes on host {host})")
  return host, int(slots)


def parse_hostfile(path):
  """Horovod/MPI hostfile: one `host slots=N` (or `host:N`) per line, '#' comments."""
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except OSError as e:
    raise InputError(f"--hostfile={path}: cannot read it ({e.strerror or e})") from None
  hosts = []
  for n, raw in enumerate(lines, 1):
    line = raw.split("#", 1)[0].strip()
    if not line:
      continue
    where = f"--hostfile={path} line {n}: {line!r}"
    m = re.match(r"^(\S+)\s+slots\s*=\s*(\S+)$", line)
    if m:
      hosts.append(_checked_host(m.group(1), m.group(2), where))
    elif re.match(r"^\S+$", line):
      hosts.append(_parse_host_entry(line, where))
    else:
      raise InputError(f"{where}: expected 'host slots=N' or 'host:N'")
  if not hosts:
    raise InputError(f"--hostfile={path}: no hosts in it (expected lines like 'node1 slots=8')")
  return tuple(hosts)


def _check_unique(hosts, source):
  seen = set()
  for h, _ in hosts:
    if h in seen:
      raise InputError(f"{source}: host {h} is listed twice (give it once with all its slots)")
    seen.add(h)


def parse_hvd_args(hvd_args):
  """A string (shell words) or a sequence -> tuple; refuses the options the launch sets itself."""
  if hvd_args is None:
    return ()
  words = tuple(shlex.split(hvd_args)) if isinstance(hvd_args, str) else tuple(hvd_args)
  for w in words:
    name = w.split("=", 1)[0]
    if name in _RESERVED:
      raise InputError(f"--hvd_args: {w!r} is set by the driver from --np/--hosts/--hostfile/the Slurm "
                       "allocation; remove it")
  return words


def slurm_allocation(env=None):
  """(np, ((host, tasks), ...)) of the Slurm job this process runs in; InputError outside one."""
  env = os.environ if env is None else env
  if "SLURM_JOB_ID" not in env:
    raise InputError("--launcher=slurm: not inside a Slurm allocation (no SLURM_JOB_ID); run the driver under "
                     "sbatch (scripts/slurm/run.sub) or salloc")
  nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
  if not nodelist:
    raise InputError("--launcher=slurm: SLURM_JOB_NODELIST is not set in this allocation")
  nodes = expand_nodelist(nodelist)
  per_node = expand_tasks_per_node(env.get("SLURM_TASKS_PER_NODE", ""), len(nodes))
  if len(set(per_node)) != 1:
    raise InputError(f"--launcher=slurm: the allocation has unequal tasks per node ({env['SLURM_TASKS_PER_NODE']});"
                     " ask sbatch for --ntasks-per-node=<GPUs per node> so every node runs the same number")
  return sum(per_node), tuple(zip(nodes, per_node))


def expand_nodelist(nodelist):
  """Slurm's compressed node list (node[01-03],gpu7) -> names, through scontrol as Slurm defines it."""
  scontrol = shutil.which("scontrol")
  if scontrol is None:
    raise InputError("--launcher=slurm: scontrol is not on PATH (needed to expand SLURM_JOB_NODELIST)")
  out = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True)
  if out.returncode != 0:
    raise InputError(f"--launcher=slurm: scontrol show hostnames {nodelist} failed: {out.stderr.strip()}")
  return out.stdout.split()


def expand_tasks_per_node(text, num_nodes):
  """SLURM_TASKS_PER_NODE ('8(x2),4') -> [8, 8, 4]."""
  counts = []
  for part in filter(None, text.split(",")):
    m = re.match(r"^(\d+)(?:\(x(\d+)\))?$", part)
    if not m:
      raise InputError(f"--launcher=slurm: cannot read SLURM_TASKS_PER_NODE={text!r}")
    counts += [int(m.group(1))] * int(m.group(2) or 1)
  if len(counts) != num_nodes:
    raise InputError(f"--launcher=slurm: SLURM_TASKS_PER_NODE={text!r} does not describe {num_nodes} node(s); "
                     "give sbatch --ntasks-per-node")
  return counts


def from_args(np=None, hosts=None, hostfile=None, hvd_args=None, launcher="local", service_hosts=()):
  """Validates the launch options. np=None means 'every slot' (hosts, allocation) or 1 (local).

  service_hosts: the tf.data service's hosts (--data_service_hosts). Under Slurm, the allocation's nodes among them
  are left to the service (every srun step of the ranks gets --exclude=them), unless they are all of its nodes."""
  launcher = launcher or "local"
  if launcher not in LAUNCHERS:
    raise InputError(f"--launcher={launcher!r}: expected one of {', '.join(LAUNCHERS)}")
  if np is not None and (not isinstance(np, int) or np < 1):
    raise InputError(f"--np={np!r}: must be a positive integer")
  if hosts and hostfile:
    raise InputError("--hosts and --hostfile both given: use one of them")
  extra = parse_hvd_args(hvd_args)
  if launcher == "slurm":
    if hosts or hostfile:
      raise InputError("--launcher=slurm takes its hosts from the allocation: drop --hosts/--hostfile")
    total, nodes = slurm_allocation()
    service_only = [h for h, _ in nodes if h in service_hosts]
    if service_only and len(service_only) < len(nodes):
      nodes = tuple((h, n) for h, n in nodes if h not in service_only)
      total = sum(n for _, n in nodes)
      extra += (f"--exclude={','.join(service_only)}",)
    return Launch("slurm", _checked_np(np, total, f"the Slurm allocation ({total} tasks)"), nodes, extra)
  if hosts or hostfile:
    listed = parse_hosts(hosts) if hosts else parse_hostfile(hostfile)
    source = "--hosts" if hosts else f"--hostfile={hostfile}"
    _check_unique(listed, source)
    total = sum(s for _, s in listed)
    return Launch("hosts", _checked_np(np, total, f"{source} ({total} slots)"), listed, extra)
  return Launch("local", np or 1, (), extra)


def _checked_np(np, total, source):
  # Every slot is used: a set's node count and its result folder must describe what actually ran.
  if np is not None and np != total:
    raise InputError(f"--np={np} but {source}: give --np={total} or leave --np out")
  return total


def tool_env(env=None):
  """env with this interpreter's bin folder first on PATH: horovodrun lives in the venv, which the driver runs
  from without it being activated."""
  env = dict(os.environ if env is None else env)
  env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
  return env


def command(launch, trainer_argv):
  """The argv of one training run (trainer_argv starts with the interpreter: python -m tf_gp2bm.train ...)."""
  trainer_argv = list(trainer_argv)
  if launch.kind == "local":
    if launch.np <= 1 and not launch.hvd_args:
      return trainer_argv
    return ["horovodrun", "-np", str(launch.np), *launch.hvd_args, *trainer_argv]
  if launch.kind == "hosts":
    return ["horovodrun", "-np", str(launch.np), "-H", launch.hosts_arg, *launch.hvd_args, *trainer_argv]
  if launch.kind == "slurm":
    # One srun step, one task per GPU; the srun module starts Horovod's rendezvous server for it first.
    return [sys.executable, "-m", "tf_gp2bm.driver.srun", f"--np={launch.np}",
            f"--ntasks_per_node={launch.hosts[0][1]}", *launch.hvd_args, "--", *trainer_argv]
  raise ValueError(f"unknown launch kind {launch.kind!r}")
