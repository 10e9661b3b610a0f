"""The set configuration: the driver's command line parsed once into a typed, frozen value.

`SetConfig` is what every part of the driver reads; `record()` is its `SetRecord`, the part written to set.json,
which a rerun must match to continue the set (RESUME_KEYS). A set folder's set.json is read back into the same
typed `SetRecord` (`from_record`), so nothing downstream handles a bare dict.
"""
import dataclasses
import os
from typing import Mapping, Optional, Tuple

from tf_gp2bm import data_service as service_mod
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks import spec as task_spec

from . import system_desc

RUN_COMMANDS = ("all", "demo")  # plus one command per task name: a set of that task alone
TOOL_COMMANDS = ("preflight", "report", "package")
DEMO_SYSTEM = "smoke"
DEMO_ORG = "GP2BM-demo"
DEMO_STATUS = system_desc.RDI
# What must match for a rerun to continue a set instead of silently mixing two configurations.
RESUME_KEYS = ("mode", "tasks", "runs", "system", "np", "data", "org", "system_name", "status", "ruleset", "kernels",
               "launch", "data_service")


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """Where the processes of a run go (validated by driver.launch.from_args)."""
  np: Optional[int] = None          # None: every slot of --hosts/--hostfile/the allocation
  hosts: Optional[str] = None       # node1:8,node2:8
  hostfile: Optional[str] = None
  hvd_args: Optional[str] = None
  launcher: str = "local"


@dataclasses.dataclass(frozen=True)
class DataServiceOptions:
  """The tf.data service the driver starts for the set (validated by driver.service.plan): the first host runs the
  dispatcher on `port`, every host runs `workers_per_host` workers on the ports after it."""
  hosts: str                        # cpu1,cpu2 (--data_service_hosts)
  port: int = service_mod.DEFAULT_PORT
  workers_per_host: int = 1

  @property
  def host_names(self):
    return tuple(h.strip() for h in self.hosts.split(","))

  @property
  def address(self):
    """HOST:PORT of the dispatcher, what every run of a task that reads from the service gets."""
    return f"{self.host_names[0]}:{self.port}"

  def to_record(self):
    return {"hosts": self.hosts, "port": self.port, "workers_per_host": self.workers_per_host}


@dataclasses.dataclass(frozen=True)
class SetConfig:
  command: str                       # all | demo | <task> | preflight | report | package
  tasks: Tuple[str, ...]
  system: str                        # flagfile name: flags/<task>/<system>.flags
  runs: Mapping[str, int]            # task -> runs in the set
  flags_dir: str
  data: Mapping[str, Mapping[str, Optional[str]]]   # task -> trainer data flag -> absolute path
  results_root: str
  launch: LaunchOptions
  demo_data_dir: Optional[str] = None
  set_dir: Optional[str] = None
  new: bool = False
  force: bool = False
  ruleset: str = task_spec.RULESET
  org: Optional[str] = None
  system_name: Optional[str] = None
  status: Optional[str] = None
  system_fields: Tuple[str, ...] = ()
  system_json: Optional[str] = None
  watchdog_minutes: float = 30.0
  rcp_bypass: bool = False
  verbose: bool = False
  kernels: Optional[str] = None
  data_service: Optional[DataServiceOptions] = None

  @property
  def demo(self):
    return self.command == "demo"

  @property
  def official(self):
    """A set meant for submission: every check it fails makes it NOT SUBMITTABLE."""
    return self.command not in ("demo",) + TOOL_COMMANDS

  def flagfile(self, task):
    return os.path.join(self.flags_dir, task, f"{self.system}.flags")

  def record(self, np, system_name, forced=False):
    """The set's SetRecord (what set.json holds and a rerun must match to continue the set)."""
    return SetRecord(
        mode=self.command, tasks=tuple(self.tasks), system=self.system, np=np, runs=dict(self.runs),
        flagfiles={t: self.flagfile(t) for t in self.tasks}, data={t: dict(self.data[t]) for t in self.tasks},
        org=self.org, system_name=system_name, status=self.status, ruleset=self.ruleset,
        watchdog_minutes=self.watchdog_minutes, rcp_bypass=self.rcp_bypass, kernels=self.kernels,
        launch=dataclasses.replace(self.launch, np=np), forced=forced, data_service=self.data_service)


@dataclasses.dataclass(frozen=True)
class SetRecord:
  """What a set folder's set.json says the set is: written once when the set starts, read back by resume,
  report and package. `launch.np` is the resolved process count (also written as np)."""
  mode: str                          # the command that started the set: all | demo | <task>
  tasks: Tuple[str, ...]
  system: str
  np: int
  runs: Mapping[str, int]
  flagfiles: Mapping[str, str]       # task -> the flagfile the set was started from (the set keeps a copy)
  data: Mapping[str, Mapping[str, Optional[str]]]
  org: Optional[str]
  system_name: str
  status: Optional[str]
  ruleset: str
  watchdog_minutes: float = 30.0
  rcp_bypass: bool = False
  kernels: Optional[str] = None
  launch: LaunchOptions = LaunchOptions()
  forced: bool = False               # started with --force past failed preflight checks
  created: Optional[str] = None      # UTC time the folder was made
  data_service: Optional[DataServiceOptions] = None  # the tf.data service the driver starts for the set

  @property
  def demo(self):
    return self.mode == "demo"

  def to_record(self):
    """The JSON form (set.json)."""
    return {
        "mode": self.mode, "tasks": list(self.tasks), "system": self.system, "np": self.np, "runs": dict(self.runs),
        "flagfiles": dict(self.flagfiles), "data": {t: dict(d) for t, d in self.data.items()},
        "org": self.org, "system_name": self.system_name, "status": self.status, "ruleset": self.ruleset,
        "watchdog_minutes": self.watchdog_minutes, "rcp_bypass": self.rcp_bypass, "kernels": self.kernels,
        "launch": {"hosts": self.launch.hosts, "hostfile": self.launch.hostfile,
                   "hvd_args": self.launch.hvd_args, "launcher": self.launch.launcher},
        "forced": self.forced, "created": self.created,
        "data_service": self.data_service.to_record() if self.data_service else None,
    }

  @classmethod
  def from_record(cls, record, where="set.json"):
    """The typed record from its JSON form; a missing or unknown key is bad input naming where."""
    if not isinstance(record, dict):
      raise InputError(f"{where}: expected a JSON object describing the set, got {type(record).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(record) - set(fields))
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
    missing = [n for n in required if n not in record]
    if unknown or missing:
      raise InputError(f"{where}: not a set description of this driver" +
                       (f"; missing {', '.join(missing)}" if missing else "") +
                       (f"; unknown {', '.join(unknown)}" if unknown else ""))
    values = dict(record)
    launch = values.pop("launch", None) or {}
    service = values.pop("data_service", None)
    try:
      return cls(**dict(values, tasks=tuple(values["tasks"]), runs={t: int(n) for t, n in values["runs"].items()},
                        launch=LaunchOptions(np=values["np"], **launch),
                        data_service=DataServiceOptions(**service) if service else None))
    except (TypeError, AttributeError, ValueError) as e:
      raise InputError(f"{where}: malformed set description ({e})") from None

  def differs_from(self, other):
    """The RESUME_KEYS in which other (this command's record) asks for another set."""
    mine, theirs = self.to_record(), other.to_record()
    return [k for k in RESUME_KEYS if mine.get(k) != theirs.get(k)]


def with_data(config, task, values):
  """A copy of config whose data flags for task are filled from values where the command line left them out."""
  data = {t: dict(d) for t, d in config.data.items()}
  data[task] = {k: data[task].get(k) or (os.path.abspath(v) if v else None) for k, v in values.items()}
  return dataclasses.replace(config, data=data)
