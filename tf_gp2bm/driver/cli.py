"""run_benchmark.sh {all|resnet|bert|demo|preflight|report|package}: runs, scores and packages a GP2BM set.

  all / resnet / bert  official sets (>= 5 ResNet, >= 10 BERT runs) with the chosen --system flagfiles
  demo                 the same flow on CPU: smoke flagfiles, generated demo data, 5 + 10 runs, ends with a score
  preflight            only the checks
  report               re-scores a set folder and rewrites its summaries (nothing else is touched)
  package              the hand-in tarball of a set folder
Rerunning the same command continues the newest unfinished set of that mode; --new starts another folder.
"""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys

from tf_gp2bm.files import read_json, write_json_atomic

from tf_gp2bm.errors import EXIT_BAD_INPUT
from tf_gp2bm.progress import Progress

from . import checks, package, preflight, reports, runs, scoring, system_desc

TASKS = {"all": ["resnet", "bert"], "resnet": ["resnet"], "bert": ["bert"], "demo": ["resnet", "bert"]}
# What must match for a rerun to continue a set instead of silently mixing two configurations.
RESUME_KEYS = ["mode", "tasks", "runs", "system", "np", "data", "org", "system_name", "status", "ruleset"]


def parse_args(argv):
  p = argparse.ArgumentParser(prog="run_benchmark.sh", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("command", choices=["all", "resnet", "bert", "demo", "preflight", "report", "package"])
  p.add_argument("--system", default="8xgpu", help="flagfile set: flags/<task>/<system>.flags (demo: smoke)")
  p.add_argument("--np", type=int, default=None, help="processes (GPUs); default: the N of an NxSOMETHING system")
  p.add_argument("--runs_resnet", type=int, default=scoring.MIN_RUNS["resnet"])
  p.add_argument("--runs_bert", type=int, default=scoring.MIN_RUNS["bert"])
  p.add_argument("--tasks", choices=["resnet", "bert"], nargs="+",
                 help="demo only: run a subset of the tasks (for tests; a subset has no GP2BM score)")
  p.add_argument("--flags_dir", default=os.path.join(runs.REPO, "flags"),
                 help="folder holding <task>/<system>.flags (default: the repository's flags/)")
  p.add_argument("--resnet_data_dir")
  p.add_argument("--bert_data_dir")
  p.add_argument("--bert_eval_dir")
  p.add_argument("--bert_init_checkpoint")
  p.add_argument("--demo_data_dir", help="where demo data is generated once (default <results_root>/demo_data)")
  p.add_argument("--results_root", default=os.path.join(runs.REPO, "results"))
  p.add_argument("--set_dir", help="an existing set folder (resume, report, package)")
  p.add_argument("--new", action="store_true", help="start a new set folder even if one is unfinished")
  p.add_argument("--force", action="store_true", help="start despite failed preflight checks (recorded)")
  p.add_argument("--ruleset", default=scoring.RULESET, help="MLPerf ruleset for every checker (pinned 4.0.0)")
  p.add_argument("--org", help="submitter / org folder name (required in official mode)")
  p.add_argument("--system_name", help="system name (default: <N>x<GPU model>, or cpu-demo)")
  p.add_argument("--status", help=f"availability, one of: {'; '.join(system_desc.STATUSES)}")
  p.add_argument("--system_field", action="append", default=[], metavar="KEY=VALUE",
                 help="a system-description field that cannot be detected (repeatable)")
  p.add_argument("--system_json", help="JSON file of system-description fields (flags win)")
  p.add_argument("--watchdog_minutes", type=float, default=None,
                 help="kill a run whose logs do not grow for this long (default 30, demo 10)")
  p.add_argument("--rcp_bypass", action="store_true", help="pass --rcp-bypass to the package checker")
  a = p.parse_args(argv)
  official = a.command in ("all", "resnet", "bert")
  for task in ("resnet", "bert"):
    n = getattr(a, f"runs_{task}")
    if official and n < scoring.MIN_RUNS[task]:
      p.error(f"--runs_{task}={n}: official mode needs at least {scoring.MIN_RUNS[task]} runs")
    if n < 1:
      p.error(f"--runs_{task}={n}: must be at least 1 (and 3 for a score: the fastest and slowest are dropped)")
  if a.tasks and a.command != "demo":
    p.error("--tasks is for the demo only; official modes are all, resnet and bert")
  if a.command == "demo":
    a.system = "smoke"
  if a.np is None:
    m = re.match(r"(\d+)x", a.system)
    a.np = int(m.group(1)) if m else 1
  if a.watchdog_minutes is None:
    a.watchdog_minutes = 10.0 if a.command == "demo" else 30.0
  return a


DEMO_DONE = ".gp2bm_demo_complete"  # written after a generator succeeded: a half-written folder is redone


def prepare_demo_data(a, log):
  """Generates the demo datasets once (reused by later demo sets) and points the data flags at them."""
  root = os.path.abspath(a.demo_data_dir or os.path.join(a.results_root, "demo_data"))
  for task, module in (("resnet", "data_prep.demo.imagenet"), ("bert", "data_prep.demo.bert")):
    if a.tasks and task not in a.tasks:
      continue
    out = os.path.join(root, task)
    if not os.path.exists(os.path.join(out, DEMO_DONE)):
      log(f"generating demo data: python -m {module} --out={out}")
      rc = subprocess.call([sys.executable, "-m", module, f"--out={out}"], cwd=runs.REPO,
                           env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
      if rc != 0:
        raise SystemExit(f"python -m {module} --out={out} failed with exit {rc}")
      open(os.path.join(out, DEMO_DONE), "w").close()
  a.resnet_data_dir = a.resnet_data_dir or os.path.join(root, "resnet")
  if a.tasks and "bert" not in a.tasks:
    return
  # data_prep.demo.bert layout: train/part-*, eval/eval_records, ckpt/model.ckpt-<steps>.{index,data-*}
  bert = os.path.join(root, "bert")
  a.bert_data_dir = a.bert_data_dir or os.path.join(bert, "train")
  a.bert_eval_dir = a.bert_eval_dir or os.path.join(bert, "eval")
  if not a.bert_init_checkpoint:
    index = sorted(glob.glob(os.path.join(bert, "ckpt", "*.index")))
    if not index:
      raise SystemExit(f"{bert}/ckpt: data_prep.demo.bert wrote no checkpoint (*.index); delete {bert} to redo it")
    a.bert_init_checkpoint = index[-1][:-len(".index")]


def make_config(a):
  demo = a.command == "demo"
  tasks = [t for t in TASKS[a.command] if not a.tasks or t in a.tasks]
  gpus = system_desc.gpu_info()
  default_name = f"{a.np}x{gpus[0]['name'].replace(' ', '-')}" if gpus else "cpu-demo"
  return {
      "mode": a.command, "tasks": tasks, "system": a.system, "np": a.np,
      "runs": {t: getattr(a, f"runs_{t}") for t in tasks},
      "flagfiles": {t: os.path.join(os.path.abspath(a.flags_dir), t, f"{a.system}.flags") for t in tasks},
      "data": {"resnet": {"data_dir": _abs(a.resnet_data_dir)},
               "bert": {"data_dir": _abs(a.bert_data_dir), "eval_dir": _abs(a.bert_eval_dir),
                        "init_checkpoint": _abs(a.bert_init_checkpoint)}},
      "org": a.org or ("GP2BM-demo" if demo else None),
      "system_name": a.system_name or default_name,
      "status": a.status or ("Research, Development, or Internal (RDI)" if demo else None),
      "ruleset": a.ruleset, "watchdog_minutes": a.watchdog_minutes, "rcp_bypass": a.rcp_bypass,
  }


def _abs(p):
  return os.path.abspath(p) if p else None


def build_sysdesc(a, config):
  overrides = read_json(a.system_json, "system description") if a.system_json else {}
  overrides.update(system_desc.parse_field_flags(a.system_field))
  return system_desc.build(config["org"], config["system_name"], config["status"], overrides,
                           demo=config["mode"] == "demo", storage_path=a.results_root)


def find_set(a, config, log):
  """The set folder to continue (or None for a new one)."""
  if a.set_dir:
    return runs.RunSet(a.set_dir)
  if a.new:
    return None
  latest = runs.RunSet.latest(a.results_root, config["mode"])
  if not latest:
    return None
  rs = runs.RunSet(latest)
  diff = [k for k in RESUME_KEYS if rs.config.get(k) != config.get(k)]
  if diff:
    raise SystemExit(f"{latest}/set.json differs from this command in {', '.join(diff)}: rerun with the "
                     f"same flags to continue it, or pass --new to start another set")
  return rs


def check_official_identity(config):
  missing = [f"--{k}" for k in ("org", "status") if not config[k]]
  if missing:
    raise SystemExit(f"official mode needs {' and '.join(missing)} (the submitter and the system's availability)")
  if config["status"] not in system_desc.STATUSES:
    raise SystemExit(f"--status {config['status']!r}: must be one of {system_desc.STATUSES}")


def run_set(a, log=print):
  if a.command == "demo":
    prepare_demo_data(a, log)
  config = make_config(a)
  if a.command != "demo":
    check_official_identity(config)
  rs = find_set(a, config, log)
  if rs and rs.is_complete():
    if os.path.exists(os.path.join(rs.path, "summary.json")):
      log(f"set {rs.path} is complete (summary.md there); pass --new to start another set")
      return 0
    return finalize(rs, log)  # every run finished but the driver stopped before scoring
  sysdesc = build_sysdesc(a, config)
  checks_rows = preflight.run_preflight(config, a.results_root, sysdesc)
  log(preflight.format_table(checks_rows))
  failed = preflight.failures(checks_rows)
  if failed and not a.force:
    log(f"preflight: {len(failed)} check(s) FAILED ({', '.join(r['check'] for r in failed)}); fix them or "
        f"pass --force (recorded in the summary)")
    return 1
  if rs is None:
    rs = runs.RunSet.create(a.results_root, dict(config, forced=bool(failed and a.force)))
    package.snapshot_source(rs.path)
    write_json_atomic(os.path.join(rs.path, "system.json"), sysdesc)
    log(f"new set: {rs.path}")
  else:
    log(f"continuing set: {rs.path}")
    if failed and a.force and not rs.config.get("forced"):
      write_json_atomic(os.path.join(rs.path, "set.json"), dict(rs.config, forced=True))
      rs.config["forced"] = True
  write_json_atomic(os.path.join(rs.path, f"preflight-{runs.utc_now()}.json"), checks_rows)
  total = sum(rs.config["runs"].values())
  progress = Progress("set", total=total, unit="runs", every_s=0)
  for task in rs.config["tasks"]:
    for i in range(rs.config["runs"][task]):
      rec = rs.run_one(task, i, log)
      progress.update()
      if rec.get("exit_code") == EXIT_BAD_INPUT:
        # Bad input or config fails every later run the same way: stop instead of burning the set.
        log(f"[{task} run {i}] the trainer rejected its input/config (exit 2, see "
            f"{rs.run_dir(task, i)}/console.log); set stopped. Fix it and start a new set with --new")
        return EXIT_BAD_INPUT
  progress.finish()
  return finalize(rs, log)


def score_set(rs):
  return {t: scoring.score_task(t, rs.results(t), min_runs=min(rs.config["runs"][t], scoring.MIN_RUNS[t]))
          for t in rs.config["tasks"]}


def summarize(rs, scored, pc, preflight_rows):
  tasks = {}
  for task, ts in scored.items():
    t = ts.as_dict()
    for i, r in enumerate(t["runs"]):
      rec = rs.driver_record(rs.run_dir(task, i)) or {}
      r.update(seed=rec.get("seed"), exit_code=rec.get("exit_code"), compliance=rec.get("compliance"),
               watchdog_killed=rec.get("watchdog_killed"), cache_clear=rec.get("cache_clear"))
    gbs = next((r.global_batch_size for r in ts.runs if r.global_batch_size), None)
    t["rcp"] = checks.rcp_lookup(task, gbs, rs.config["ruleset"]).line() if gbs else "no global_batch_size logged"
    scaling = os.path.join(rs.path, "submission", package.safe_name(rs.config["org"]), "results",
                           package.safe_name(rs.config["system_name"]), task, "scaling.json")
    if os.path.exists(scaling) and ts.latency:
      t["mlperf_scaling_factor"] = read_json(scaling)["scaling_factor"]
      t["mlperf_normalized_min"] = ts.latency * t["mlperf_scaling_factor"]
    tasks[task] = t
  latency = {t: s.latency for t, s in scored.items()}
  normalized = {t: tasks[t].get("mlperf_normalized_min", latency[t]) for t in tasks}
  records = [rs.driver_record(d) or {} for t in scored for d in rs.run_dirs(t)]
  return {
      "set_dir": rs.path, "set": rs.config, "ruleset": rs.config["ruleset"], "tasks": tasks, "latency": latency,
      "score": scoring.gp2bm_score(latency.get("resnet"), latency.get("bert")),
      # The RFP's score uses the raw trimmed means; MLPerf publishes times multiplied by the RCP scaling factor
      # the package checker wrote (scaling.json). Both are reported, the first is the GP2BM answer.
      "score_with_mlperf_rcp_scaling": scoring.gp2bm_score(normalized.get("resnet"), normalized.get("bert")),
      "forced": bool(rs.config.get("forced")),
      "cache_clear_all": all(r.get("cache_clear") for r in records) if records else None,
      "package_checker": pc, "preflight": preflight_rows,
  }


def finalize(rs, log=print):
  """Scores the set, builds the submission tree, runs the package checker, writes every report."""
  scored = score_set(rs)
  sysdesc = read_json(os.path.join(rs.path, "system.json"), "system description")
  org_dir = package.build_tree(rs, scored, sysdesc)
  pc_log = os.path.join(rs.path, "package_checker.log")
  v = checks.package_check(org_dir, rs.config["ruleset"], pc_log, rcp_bypass=rs.config.get("rcp_bypass"))
  with open(os.path.join(rs.path, "package_checker.txt"), "w") as f:
    f.write(v.output)
  pc = {"passed": v.passed, "summary": v.summary, "log": pc_log}
  pre = sorted(n for n in os.listdir(rs.path) if n.startswith("preflight-"))
  preflight_rows = read_json(os.path.join(rs.path, pre[0])) if pre else []
  summary = summarize(rs, scored, pc, preflight_rows)
  paths = reports.write_all(rs.path, summary)
  for task, ts in scored.items():
    log(f"{task}: latency {ts.latency if ts.latency is None else round(ts.latency, 3)} min"
        + (f" ({ts.reason})" if ts.reason else ""))
  log(f"package checker: {v.summary[:300]}")
  score = summary["score"]
  log(f"GP2BM score = 7.19/R + 9.05/B = {'INVALID' if score is None else f'{score:.4f}'}")
  log(f"summary: {paths['md']}")
  return 0 if score is not None or len(scored) < 2 else 3


def _terminate(signum, frame):
  # SIGTERM (kill, a batch scheduler) unwinds like Ctrl-C, so the running trainer's process group is killed and
  # the unfinished run is left for the next resume instead of an orphan holding the GPUs.
  raise SystemExit(128 + signum)


def main(argv=None):
  a = parse_args(sys.argv[1:] if argv is None else argv)
  signal.signal(signal.SIGTERM, _terminate)
  if a.command == "preflight":
    if a.system == "smoke":
      a.command = "demo"
    config = make_config(argparse.Namespace(**dict(vars(a), command="all")))
    config["org"] = config["org"] or "unset"
    config["status"] = config["status"] or system_desc.STATUSES[0]
    rows = preflight.run_preflight(config, a.results_root, build_sysdesc(a, config))
    print(preflight.format_table(rows))
    return 1 if preflight.failures(rows) else 0
  if a.command in ("report", "package"):
    path = a.set_dir or _newest_set(a.results_root)
    rs = runs.RunSet(path)
    if not rs.is_complete():
      raise SystemExit(f"{rs.path}: the set is not finished; rerun its command to continue it first")
    if a.command == "report":
      return finalize(rs)
    if not os.path.exists(os.path.join(rs.path, "summary.json")):
      finalize(rs)
    print(f"package: {package.make_tarball(rs.path)}")
    return 0
  return run_set(a)


def _newest_set(root):
  sets = sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "set.json"))) \
      if os.path.isdir(root) else []
  if not sets:
    raise SystemExit(f"no set folder under {root}; pass --set_dir")
  return os.path.join(root, sets[-1])
