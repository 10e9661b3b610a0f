"""`run_benchmark.sh score PATH...`: the evaluator's side. Scores vendors' MLPerf Training results, whatever
implementation made them, exactly as the driver scores its own sets, and ranks the systems.

Each PATH is a submission tree (<org>/results/<system>/<benchmark>/result_*.txt beside <org>/systems/<system>.json),
a folder of such trees, or one system's results folder. `--pair A B` joins two benchmark folders that a vendor
submitted under two system names into one system. `PATH@RULESET` checks that input under another ruleset (the
GP2BM score is defined on the pinned one, so it is then INVALID, but its checker output is there to read).
Every system gets a verdict line; one bad system never stops the others. Reports: one folder per system (the
same reports as a set of our own) plus ranking.md / .csv / .xlsx: one table, valid systems by score (best first).
"""
import argparse
import concurrent.futures
import dataclasses
import datetime
import glob
import logging
import os
import re
import shutil
import sys
from typing import Dict, Optional

from mlperf_logging.rcp_checker import rcp_checker

from tf_gp2bm.errors import EXIT_BAD_INPUT, InputError
from tf_gp2bm.files import read_json
from tf_gp2bm.tasks import spec as task_spec

from . import checks, package, ranking, reports, scoring, summary

from .ranking import INVALID, VALID
EXIT_INVALID = 3  # finished, but at least one system has no valid score (as the driver's NOT SUBMITTABLE)
RESULT_FILE = re.compile(r"result_(\d+)\.txt$")


@dataclasses.dataclass
class Entry:
  """One system to score: where each benchmark's result files are, and what describes the system."""
  name: str                             # org/system, or org/systemA + systemB for a pair
  org: str
  folders: Dict[str, str]               # task name -> its result_*.txt folder (tasks without one are missing)
  system_jsons: Dict[str, Optional[str]]   # system name -> systems/<system>.json (None: no tree around it)
  rulesets: Dict[str, str]              # task name -> ruleset its logs are checked under
  org_dir: Optional[str] = None         # the submission tree, when the input sits in one


def _task_of_folder(name):
  return next((s.name for s in task_spec.specs() if name in (s.name, s.benchmark)), None)


def _task_folders(system_dir):
  found = {}
  for s in task_spec.specs():
    for name in dict.fromkeys((s.name, s.benchmark)):
      if os.path.isdir(os.path.join(system_dir, name)):
        found[s.name] = os.path.join(system_dir, name)
  return found


def split_ruleset(arg, default):
  """PATH[@RULESET] -> (path, ruleset)."""
  m = re.match(r"^(.*)@(\d+\.\d+\.\d+)$", arg)
  return (m.group(1), m.group(2)) if m else (arg, default)


def _readable_dir(path):
  if not os.path.exists(path):
    raise InputError(f"{path}: no such file or folder")
  if not os.path.isdir(path) or not os.access(path, os.R_OK | os.X_OK):
    raise InputError(f"{path}: not a readable folder (expected a submission tree or a system's results folder)")


def _system_entry(system_dir, ruleset):
  """The Entry of <org>/results/<system> (or of a bare folder holding resnet/ and bert/)."""
  system = os.path.basename(os.path.normpath(system_dir))
  results = os.path.dirname(os.path.normpath(system_dir))
  org_dir = os.path.dirname(results) if os.path.basename(results) == "results" else None
  org = os.path.basename(org_dir) if org_dir else "-"
  sys_json = os.path.join(org_dir, "systems", f"{system}.json") if org_dir else None
  folders = _task_folders(system_dir)
  return Entry(f"{org}/{system}", org, folders, {system: sys_json}, {t: ruleset for t in folders}, org_dir)


def discover(path, ruleset):
  """Every system under one PATH argument (see the module doc); bad input names the path."""
  _readable_dir(path)
  if os.path.isdir(os.path.join(path, "results")):  # <org>
    systems = sorted(d for d in glob.glob(os.path.join(path, "results", "*")) if os.path.isdir(d))
    entries = [_system_entry(d, ruleset) for d in systems if _task_folders(d)]
    if not entries:
      raise InputError(f"{path}: a submission tree without {' or '.join(task_spec.names())} results")
    return entries
  if _task_folders(path):  # <org>/results/<system>
    return [_system_entry(path, ruleset)]
  orgs = sorted(d for d in glob.glob(os.path.join(path, "*")) if os.path.isdir(os.path.join(d, "results")))
  if orgs:  # a folder of submission trees (a results repository)
    entries = []
    for org in orgs:
      try:
        entries += discover(org, ruleset)
      except InputError:
        continue  # an organisation with neither benchmark has nothing to score here
    if entries:
      return entries
  if glob.glob(os.path.join(path, "result_*.txt")):
    raise InputError(f"{path}: one benchmark's results; give its system's folder, or join two benchmark "
                     "folders submitted under two system names with --pair RESNET_FOLDER BERT_FOLDER")
  raise InputError(f"{path}: expected a submission tree (<org>/results/<system>/<benchmark>/result_*.txt), a folder "
                   f"of such trees, or one system's results folder (holding {' and/or '.join(task_spec.names())})")


def pair_entry(args, ruleset):
  """--pair A B: two benchmark folders (or system folders holding one benchmark each) as one system."""
  parts = []
  for arg in args:
    path, rs = split_ruleset(arg, ruleset)
    _readable_dir(path)
    norm = os.path.normpath(path)
    task = _task_of_folder(os.path.basename(norm))
    if task:
      system_dir = os.path.dirname(norm)
    else:
      found = _task_folders(norm)
      if len(found) != 1:
        raise InputError(f"--pair {path}: expected one benchmark's folder ({' or '.join(task_spec.names())}) or a "
                         f"system folder holding exactly one of them, found {len(found)}")
      (task, _), system_dir = next(iter(found.items())), norm
      norm = found[task]
    parts.append((task, norm, _system_entry(system_dir, rs)))
  tasks = [t for t, _, _ in parts]
  if len(set(tasks)) != len(tasks):
    raise InputError(f"--pair {' '.join(args)}: both folders hold {tasks[0]} results; a pair joins one folder of "
                     f"each benchmark ({', '.join(task_spec.names())})")
  org = "+".join(dict.fromkeys(e.org for _, _, e in parts))
  systems = [next(iter(e.system_jsons)) for _, _, e in parts]
  name = f"{org}/{' + '.join(systems)}"
  return Entry(name, org, {t: f for t, f, _ in parts}, {s: j for _, _, e in parts for s, j in e.system_jsons.items()},
               {t: e.rulesets[t] for t, _, e in parts}, parts[0][2].org_dir if len({e.org_dir for _, _, e in parts})
               == 1 else None)


# --- scoring one system ------------------------------------------------------------------------------------------
def result_files(folder):
  """result_<i>.txt in index order."""
  found = [(int(m.group(1)), p) for p in glob.glob(os.path.join(folder, "result_*.txt"))
           for m in [RESULT_FILE.search(os.path.basename(p))] if m]
  return [p for _, p in sorted(found)]


def check_logs(logs, ruleset, out_dir, jobs):
  """The compliance checker on every log, in parallel child processes; verdicts in the logs' order."""
  os.makedirs(out_dir, exist_ok=True)
  outputs = [os.path.join(out_dir, f"{os.path.basename(os.path.dirname(p))}_{os.path.basename(p)}.log")
             for p in logs]
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    return list(pool.map(lambda a: checks.compliance_check(a[0], ruleset, a[1]), zip(logs, outputs)))


def rcp_check(folder, ruleset):
  """The RCP checker on one benchmark folder, as the package checker runs it (pruned RCPs), without writing the
  scaling file into the vendor's tree. Returns (passed, message, scaling factor)."""
  try:
    passed, message, factor = rcp_checker.check_directory(folder, "training", ruleset, verbose=False,
                                                          bert_train_samples=False, rcp_pass="pruned_rcps",
                                                          set_scaling=False)
  except Exception as e:  # the checker asserts on logs it cannot read; that is this system's verdict, not ours
    return False, f"RCP checker could not read the logs ({type(e).__name__}: {e})", None
  return passed, message, factor


def package_check_staged(entry, out_dir, ruleset):
  """The package checker on a copy of the system's part of the tree (it writes scaling.json into the results it
  checks; the implementation folders it only reads are linked). Runs only where the tree is complete; returns the
  report block."""
  org_dir = entry.org_dir
  missing = [] if org_dir else ["the input is not inside a submission tree"]
  missing += [f"systems/{s}.json" for s, j in entry.system_jsons.items() if not (j and os.path.exists(j))]
  if org_dir:
    missing += [f"benchmarks/{os.path.basename(f)}/implementations" for f in entry.folders.values()
                if not os.path.isdir(os.path.join(org_dir, "benchmarks", os.path.basename(f), "implementations"))]
  if missing:
    return {"passed": None, "summary": f"not run: incomplete submission tree (no {', '.join(missing)})"}
  stage = os.path.join(out_dir, "package", package.safe_name(entry.org))
  shutil.rmtree(stage, ignore_errors=True)
  for system, sys_json in entry.system_jsons.items():
    shutil.copyfile(sys_json, os.path.join(_mkdir(stage, "systems"), f"{system}.json"))
  for task, folder in entry.folders.items():
    system, bench = os.path.basename(os.path.dirname(folder)), os.path.basename(folder)
    for log in result_files(folder):
      shutil.copyfile(log, os.path.join(_mkdir(stage, "results", system, bench), os.path.basename(log)))
    link = os.path.join(_mkdir(stage, "benchmarks"), bench)
    if not os.path.lexists(link):
      os.symlink(os.path.abspath(os.path.join(org_dir, "benchmarks", bench)), link)
  log = os.path.join(out_dir, "package_checker.log")
  v = checks.package_check(stage, ruleset, log)
  with open(os.path.join(out_dir, "package_checker.txt"), "w") as f:
    f.write(v.output)
  return {"passed": v.passed, "summary": v.summary, "log": os.path.basename(log)}


def _mkdir(*parts):
  path = os.path.join(*parts)
  os.makedirs(path, exist_ok=True)
  return path


def score_entry(entry, out_dir, jobs=2):
  """Checks and scores one system and writes its reports into out_dir; returns its summary dict."""
  reasons, notes, tasks = [], [], {}
  rulesets = sorted(set(entry.rulesets.values()))
  if len(rulesets) > 1:
    reasons.append("mixed rulesets: " + ", ".join(f"{t} {r}" for t, r in entry.rulesets.items()) +
                   " (one system's benchmarks must come from one MLPerf round)")
  for r in rulesets:
    if r != task_spec.RULESET:
      reasons.append(f"ruleset {r}: the GP2BM score is defined on MLPerf Training {task_spec.RULESET} results")
  for s in task_spec.scored_specs():
    folder = entry.folders.get(s.name)
    if not folder:
      reasons.append(f"no {s.name} results")
      continue
    block, task_reasons, task_notes = score_task_folder(s, folder, entry.rulesets[s.name], out_dir, jobs)
    if block:
      tasks[s.name] = block
    reasons += task_reasons
    notes += task_notes
  for system, sys_json in entry.system_jsons.items():
    if not (sys_json and os.path.exists(sys_json)):
      notes.append(f"no systems/{system}.json beside the results: the system is described by its logs only")
  pc = package_check_staged(entry, out_dir, task_spec.RULESET if len(rulesets) != 1 else rulesets[0])
  if pc["passed"] is False:
    reasons.append(f"package checker: {pc['summary'][:300]}")
  elif pc["passed"] is None:
    notes.append(f"package checker {pc['summary']}")
  try:
    system = describe(entry)
  except ValueError as e:  # not JSON, or not an object of fields
    system = _bare_description(entry)
    reasons.append(f"system description: {e}")
  score = summary.score_block(tasks)
  if score["value"] is None and not reasons:
    reasons.append(f"no score: {score['why_none']}")
  if reasons:
    verdict = {"kind": INVALID, "headline": f"INVALID: {len(reasons)} reason(s) below", "reasons": reasons,
               "notes": notes}
  else:
    verdict = {"kind": VALID, "headline": f"VALID: every log passes the {rulesets[0]} compliance checker, the run "
               "counts, failure rules and RCPs are met", "reasons": [], "notes": notes}
  result = {
      "verdict": verdict, "system": system, "score": score,
      "title": f"GP2BM evaluation of {entry.name}", "name": entry.name, "report_folder": os.path.basename(out_dir),
      "sources": sorted(entry.folders.values()), "ruleset": "/".join(rulesets) or task_spec.RULESET,
      "tasks": tasks, "package_checker": pc,
  }
  reports.write_all(out_dir, result)
  return result


def score_task_folder(spec, folder, ruleset, out_dir, jobs):
  """One benchmark of a system: (report block, reasons it is invalid, notes)."""
  logs = result_files(folder)
  if not logs:
    return None, [f"{spec.name}: no result_*.txt in {folder}"], []
  reasons, notes = [], []
  if len(logs) != spec.min_runs:
    reasons.append(f"{spec.name}: {len(logs)} result files; an MLPerf submission has exactly {spec.min_runs}")
  verdicts = check_logs(logs, ruleset, os.path.join(out_dir, "compliance"), jobs)
  results = [scoring.parse_run(p, spec.name, ruleset) for p in logs]
  for p, r, v in zip(logs, results, verdicts):
    if not v.passed:  # counts as a failed run: one is dropped as the slowest, two make the benchmark invalid
      r.converged, r.reason = False, f"compliance checker {v.summary}"
      notes.append(f"{spec.name} {os.path.basename(p)}: compliance checker {v.summary[:200]}")
    if r.division not in (None, "closed"):
      reasons.append(f"{spec.name} {os.path.basename(p)}: logged submission_division {r.division!r} (the score "
                     "compares closed-division results)")
  if all(r.division in (None, "closed") for r in results):  # the package checker seeds-checks closed results only
    seeds = checks.seed_check(logs, ruleset)
    if not seeds.passed:
      reasons.append(f"{spec.name}: seed checker {seeds.summary}")
  ts = scoring.score_task(spec.name, results, min_runs=spec.min_runs)
  if not ts.valid:
    reasons.append(ts.reason)
  elif ts.reason:
    notes.append(ts.reason)
  passed, message, factor = rcp_check(folder, ruleset) if ts.valid else (None, "not run (no valid runs)", None)
  if passed is False:
    reasons.append(f"{spec.name}: RCP check failed: {message}")
  runs = [summary.run_row(ts, i, {"seed": r.seeds[0] if len(r.seeds) == 1 else r.seeds or None,
                                  "compliance": v.summary, "compliance_passed": v.passed,
                                  "cache_clear": r.cache_clear}, p)
          for i, (p, r, v) in enumerate(zip(logs, results, verdicts))]
  block = summary.task_block(ts, runs, ruleset, factor)
  block["rcp_check"] = {"passed": passed, "message": message, "scaling_factor": factor}
  return block, reasons, notes


def describe(entry):
  """The system description fields the reports show first, from the system json(s)."""
  descs = [read_json(j, "system description") for j in entry.system_jsons.values() if j and os.path.exists(j)]
  if not descs:
    return _bare_description(entry)
  bad = [j for j, d in zip(entry.system_jsons.values(), descs) if not isinstance(d, dict)]
  if bad:
    raise ValueError(f"{bad[0]}: expected a JSON object of system fields")
  out = {}
  for k in summary.SYSTEM_KEYS:
    values = list(dict.fromkeys(str(d.get(k)) for d in descs if d.get(k) not in (None, "")))
    if values:
      out[k] = " + ".join(values)
  return out


def _bare_description(entry):
  return {"system_name": entry.name.split("/", 1)[1], "submitter": entry.org}


# --- command line ------------------------------------------------------------------------------------------------
def build_parser():
  p = argparse.ArgumentParser(
      prog="run_benchmark.sh score", formatter_class=argparse.RawDescriptionHelpFormatter,
      description=__doc__ + "\nexit status: 0 every system VALID, 2 an unreadable or unrecognised PATH (nothing is "
      "scored), 3 done but at least one system INVALID.")
  p.add_argument("paths", nargs="*", metavar="PATH[@RULESET]", help="submission tree(s) or system results folder(s)")
  p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("RESNET_FOLDER", "BERT_FOLDER"),
                 help="two benchmark folders submitted under two system names, scored as one system (repeatable)")
  p.add_argument("--out", default=None, help="report folder; default <results root>/score-<UTC time>")
  p.add_argument("--ruleset", default=task_spec.RULESET, help="ruleset for inputs without @RULESET (default: %(default)s)")
  p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compliance checkers run at once (default: one per core)")
  return p


def main(argv, results_root):
  """The `score` command; results_root holds the default report folder (the driver's results folder)."""
  a = build_parser().parse_args(argv)
  if not a.paths and not a.pair:
    print("error: give at least one PATH or --pair (see run_benchmark.sh score --help)", file=sys.stderr)
    return EXIT_BAD_INPUT
  try:  # every input is looked at before anything is scored: a typo costs nothing
    entries = [e for arg in a.paths for e in discover(*split_ruleset(arg, a.ruleset))]
    entries += [pair_entry(pair, a.ruleset) for pair in a.pair]
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
  out = os.path.abspath(a.out or os.path.join(results_root, f"score-{stamp}"))
  os.makedirs(out, exist_ok=True)
  logging.getLogger().setLevel(logging.ERROR)  # the RCP checker logs every step; its verdict is in the reports
  results, used = [], set()
  for entry in entries:
    folder = os.path.join(out, _folder_name(entry, used))
    os.makedirs(folder, exist_ok=True)
    try:
      s = score_entry(entry, folder, max(1, a.jobs))
    except Exception as e:  # a system the checkers choke on gets its verdict; the others are still scored
      s = {"name": entry.name, "verdict": {"kind": INVALID, "headline": "INVALID: could not be scored",
                                           "reasons": [f"{type(e).__name__}: {e}"], "notes": []},
           "system": _bare_description(entry), "score": summary.score_block({}), "ruleset": a.ruleset, "tasks": {},
           "title": f"GP2BM evaluation of {entry.name}", "sources": sorted(entry.folders.values()),
           "report_folder": os.path.basename(folder),
           "package_checker": {"passed": None, "summary": "not run"}}
      reports.write_all(folder, s)
    results.append(s)
    v = s["verdict"]
    print(f"{entry.name}: {v['kind']}  score {ranking.cell(s['score']['value'], 4)}  ({s['score']['computation']})")
    for line in v["reasons"]:
      print(f"  - {line}")
    for line in v.get("notes", []):
      print(f"  note: {line}")
  paths, rows = ranking.write(out, results)
  print()
  print(ranking.text(rows))
  print(f"\nreports: {paths['md']}, ranking.csv, ranking.xlsx; one folder per system in {out}")
  return 0 if all(s["verdict"]["kind"] == VALID for s in results) else EXIT_INVALID


def _folder_name(entry, used):
  name = package.safe_name(entry.name.replace("/", "__"))
  return ranking.unique_name(name, used, lambda n: f"{name}-{n}")
