"""run_benchmark.sh COMMAND [options]: runs, scores and packages a GP2BM set of MLPerf Training runs.

commands:
  all          the official set: every task ({counts} runs at least) with the --system flagfiles
  {names:<12} an official set of one task (no GP2BM score: the score needs every task)
  demo         the same flow on CPU: smoke flagfiles, generated demo data, a score marked DEMO
  preflight    only the checks, printed as a table
  report       re-scores a finished set folder, re-checks changed logs and rewrites its reports
  package      the hand-in tarball of a finished set folder
  score        score PATH... [--pair A B] [--out DIR]: vendors' MLPerf results (any implementation), checked,
               scored and ranked like our own sets (run_benchmark.sh score --help)
Rerunning the same command continues the newest unfinished set of that mode; --new starts another folder.
One driver at a time per results folder (a lock file; a second one is refused, naming the first).

exit status: 0 done (official: SUBMITTABLE), 1 preflight failed or the set stopped, 2 bad input (flags,
flagfiles, data), 3 finished but NOT SUBMITTABLE or without a valid score.
"""
import argparse
import os
import re
import signal
import sys

from tf_gp2bm import data_service
from tf_gp2bm.errors import EXIT_BAD_INPUT, InputError
from tf_gp2bm.files import flags_dir, repo_root
from tf_gp2bm.tasks import spec as task_spec

from . import config as cfg
from . import lock, system_desc

SCORE_COMMAND = "score"


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
  """Keeps the description's layout and shows every option's default."""


def build_parser():
  specs = task_spec.specs()
  names = [s.name for s in specs]
  description = __doc__.format(counts=" + ".join(f"{s.min_runs} {s.name}" for s in specs), names=", ".join(names))
  p = argparse.ArgumentParser(prog="run_benchmark.sh", description=description, formatter_class=_Formatter)
  p.add_argument("command", choices=list(cfg.RUN_COMMANDS) + names + list(cfg.TOOL_COMMANDS) + [SCORE_COMMAND],
                 help="what to do (see above)")
  p.add_argument("--system", default="8xgpu",
                 help=f"flagfile set: flags/<task>/<system>.flags (the demo always uses {cfg.DEMO_SYSTEM})")
  p.add_argument("--np", type=int, default=None,
                 help="processes (GPUs) per run; default: every slot of --hosts/--hostfile/the Slurm allocation, "
                      "else the N of an Nx... --system, else 1")
  p.add_argument("--hosts", default=None, help="multi-node: host:slots[,host:slots...], e.g. node1:8,node2:8")
  p.add_argument("--hostfile", default=None, help="multi-node: a file of 'host slots=N' lines (instead of --hosts)")
  p.add_argument("--hvd_args", default=None,
                 help="extra launcher arguments passed through verbatim, e.g. \"--network-interface=ib0\"")
  p.add_argument("--launcher", choices=["local", "slurm"], default="local",
                 help="local: horovodrun here or on --hosts; slurm: srun inside the current allocation")
  p.add_argument("--data_service_hosts", default=None, metavar="HOST[,HOST...]",
                 help="start a tf.data service for the set's tasks that read from one (ResNet): the first host runs "
                      "the dispatcher, every host runs --data_service_workers_per_host workers, over the same "
                      "launcher as the ranks; every run of those tasks gets --data_service (docs/multinode.md)")
  p.add_argument("--data_service_port", type=int, default=data_service.DEFAULT_PORT,
                 help="with --data_service_hosts: the dispatcher's port; the workers of a host take the ports after it")
  p.add_argument("--data_service_workers_per_host", type=int, default=1,
                 help="with --data_service_hosts: worker processes on each listed host")
  for s in specs:
    p.add_argument(f"--runs_{s.name}", type=int, default=s.min_runs,
                   help=f"{s.title} runs in the set (official mode: at least {s.min_runs})")
  p.add_argument("--tasks", choices=names, nargs="+", default=None,
                 help="demo only: a subset of the tasks (for tests; a subset has no GP2BM score)")
  p.add_argument("--flags_dir", default=flags_dir(), help="folder holding <task>/<system>.flags")
  for s in specs:
    for flag in s.data_flags:
      p.add_argument(s.data_flag_option(flag), default=None,
                     help=f"{s.name}: the trainer's --{flag} (demo: the generated demo data)")
  p.add_argument("--demo_data_dir", default=None, help="where demo data is generated once; default "
                 "<results_root>/demo_data")
  p.add_argument("--results_root", default=os.path.join(repo_root(), "results"), help="folder of set folders")
  p.add_argument("--set_dir", default=None, help="an existing set folder (resume, report, package)")
  p.add_argument("--new", action="store_true", help="start a new set folder even if one is unfinished")
  p.add_argument("--force", action="store_true", help="start despite failed preflight checks (the set is then "
                 "NOT SUBMITTABLE)")
  p.add_argument("--ruleset", default=task_spec.RULESET, help="MLPerf Training ruleset for every checker")
  p.add_argument("--org", default=None, help="submitter (org folder name); required in official mode")
  p.add_argument("--system_name", default=None, help="system name; default <N>x<GPU model>, or cpu-demo")
  p.add_argument("--status", default=None, help=f"availability, one of: {'; '.join(system_desc.STATUSES)}")
  p.add_argument("--system_field", action="append", default=[], metavar="KEY=VALUE",
                 help="a system-description field that cannot be detected (repeatable)")
  p.add_argument("--system_json", default=None, help="JSON file of system-description fields (flags win)")
  p.add_argument("--watchdog_minutes", type=float, default=None,
                 help="kill a run whose logs do not grow for this long; default 30, demo 10")
  p.add_argument("--rcp_bypass", action="store_true", help="pass --rcp-bypass to the package checker")
  p.add_argument("--kernels", default=None, metavar="MODULE",
                 help="vendor kernel module passed to every run as --kernels; its files go into the submission")
  p.add_argument("--verbose", action="store_true",
                 help="stream every run's full console to the terminal (always kept in its console.log)")
  return p


def parse_args(argv):
  """The command line as a SetConfig (argparse errors exit 2 naming the option)."""
  p = build_parser()
  a = p.parse_args(argv)
  official = a.command not in ("demo",) + cfg.TOOL_COMMANDS
  for s in task_spec.specs():
    n = getattr(a, f"runs_{s.name}")
    if n < 1:
      p.error(f"--runs_{s.name}={n}: must be at least 1 (and 3 for a score: the fastest and slowest are dropped)")
    if official and n < s.min_runs:
      p.error(f"--runs_{s.name}={n}: official mode needs at least {s.min_runs} runs")
  if a.tasks and a.command != "demo":
    p.error("--tasks is for the demo only; the official modes are all and one command per task")
  if a.np is not None and a.np < 1:
    p.error(f"--np={a.np}: must be at least 1")
  if a.data_service_workers_per_host < 1:
    p.error(f"--data_service_workers_per_host={a.data_service_workers_per_host}: must be at least 1")
  if not 0 < a.data_service_port < 65536 - a.data_service_workers_per_host:
    p.error(f"--data_service_port={a.data_service_port}: the dispatcher's port and the "
            f"{a.data_service_workers_per_host} worker port(s) after it must lie in 1..65535")
  if a.status is not None and a.status not in system_desc.STATUSES:
    p.error(f"--status={a.status!r}: must be one of {system_desc.STATUSES}")
  demo = a.command == "demo"
  system = cfg.DEMO_SYSTEM if demo else a.system
  np = a.np
  if np is None and not (a.hosts or a.hostfile or a.launcher == "slurm"):
    m = re.match(r"(\d+)x", system)
    np = int(m.group(1)) if m else 1
  if a.command in cfg.RUN_COMMANDS or a.command in cfg.TOOL_COMMANDS:
    tasks = tuple(n for n in task_spec.names() if not a.tasks or n in a.tasks)
  else:
    tasks = (a.command,)
  data = {s.name: {f: _abs(getattr(a, s.data_flag_option(f)[2:])) for f in s.data_flags} for s in task_spec.specs()}
  return cfg.SetConfig(
      command=a.command, tasks=tasks, system=system, runs={t: getattr(a, f"runs_{t}") for t in tasks},
      flags_dir=os.path.abspath(a.flags_dir), data=data, results_root=os.path.abspath(a.results_root),
      launch=cfg.LaunchOptions(np=np, hosts=a.hosts, hostfile=_abs(a.hostfile), hvd_args=a.hvd_args,
                               launcher=a.launcher),
      demo_data_dir=_abs(a.demo_data_dir), set_dir=_abs(a.set_dir), new=a.new, force=a.force, ruleset=a.ruleset,
      org=a.org or (cfg.DEMO_ORG if demo else None), system_name=a.system_name,
      status=a.status or (cfg.DEMO_STATUS if demo else None), system_fields=tuple(a.system_field),
      system_json=_abs(a.system_json),
      watchdog_minutes=a.watchdog_minutes if a.watchdog_minutes is not None else (10.0 if demo else 30.0),
      rcp_bypass=a.rcp_bypass, verbose=a.verbose, kernels=a.kernels,
      data_service=cfg.DataServiceOptions(a.data_service_hosts, a.data_service_port, a.data_service_workers_per_host)
      if a.data_service_hosts is not None else None)


def _abs(path):
  return os.path.abspath(path) if path else None


def _terminate(signum, frame):
  # SIGTERM (kill, a batch scheduler) and SIGHUP unwind like Ctrl-C, so the running trainer's process group is
  # killed and the unfinished run is left for the next resume instead of an orphan holding the GPUs.
  raise SystemExit(128 + signum)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == [SCORE_COMMAND]:  # the evaluator's command has its own arguments (paths, not a set)
    from . import evaluate
    return evaluate.main(argv[1:], os.path.join(repo_root(), "results"))
  config = parse_args(argv)
  signal.signal(signal.SIGTERM, _terminate)
  signal.signal(signal.SIGHUP, _terminate)  # a closed terminal or ssh session stops the set the same way
  # The tools installed beside this interpreter (horovodrun in the venv) are the ones the runs must use, also
  # when the venv is not activated.
  os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
  # The set machinery imports the checkers, matplotlib and openpyxl: only after the command line is valid, so
  # --help and flag errors answer at once.
  from . import flow
  root = os.path.dirname(config.set_dir) if config.set_dir else config.results_root
  try:
    with lock.ResultsLock(root):
      return flow.dispatch(config)
  except lock.LockHeld as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
