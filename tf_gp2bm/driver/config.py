"""The set configuration: the driver's command line parsed once into a typed, frozen value.

`SetConfig` is what every part of the driver reads; `record()` is the part written to set.json, which a rerun
must match to continue the set (RESUME_KEYS).
"""
import dataclasses
import os
from typing import Mapping, Optional, Tuple

from tf_gp2bm.tasks import spec as task_spec

from . import system_desc

RUN_COMMANDS = ("all", "demo")  # plus one command per task name: a set of that task alone
TOOL_COMMANDS = ("preflight", "report", "package")
DEMO_SYSTEM = "smoke"
DEMO_ORG = "GP2BM-demo"
DEMO_STATUS = system_desc.RDI
# What must match for a rerun to continue a set instead of silently mixing two configurations.
RESUME_KEYS = ("mode", "tasks", "runs", "system", "np", "data", "org", "system_name", "status", "ruleset", "kernels",
               "launch")


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """Where the processes of a run go (validated by driver.launch.from_args)."""
  np: Optional[int] = None          # None: every slot of --hosts/--hostfile/the allocation
  hosts: Optional[str] = None       # node1:8,node2:8
  hostfile: Optional[str] = None
  hvd_args: Optional[str] = None
  launcher: str = "local"


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

  @property
  def demo(self):
    return self.command == "demo"

  @property
  def official(self):
    """A set meant for submission: every check it fails makes it NOT SUBMITTABLE."""
    return self.command not in ("demo",) + TOOL_COMMANDS

  def flagfile(self, task):
    return os.path.join(self.flags_dir, task, f"{self.system}.flags")

  def record(self, np, system_name):
    """The set.json description of the set (what a rerun must match to continue it)."""
    return {
        "mode": self.command, "tasks": list(self.tasks), "system": self.system, "np": np,
        "runs": dict(self.runs), "flagfiles": {t: self.flagfile(t) for t in self.tasks},
        "data": {t: dict(self.data[t]) for t in self.tasks},
        "org": self.org, "system_name": system_name, "status": self.status, "ruleset": self.ruleset,
        "watchdog_minutes": self.watchdog_minutes, "rcp_bypass": self.rcp_bypass, "kernels": self.kernels,
        "launch": {"hosts": self.launch.hosts, "hostfile": self.launch.hostfile,
                   "hvd_args": self.launch.hvd_args, "launcher": self.launch.launcher},
    }


def with_data(config, task, values):
  """A copy of config whose data flags for task are filled from values where the command line left them out."""
  data = {t: dict(d) for t, d in config.data.items()}
  data[task] = {k: data[task].get(k) or (os.path.abspath(v) if v else None) for k, v in values.items()}
  return dataclasses.replace(config, data=data)
