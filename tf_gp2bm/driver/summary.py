"""The one `summary` dict every report is written from: the verdict first, then the system, the score and how
it was computed, each task's runs (attempts included). Paths in it are relative to the set folder.
"""
import os
import re
import statistics

from tf_gp2bm.files import read_json
from tf_gp2bm.tasks import spec as task_spec

from . import checks, package, scoring

DEMO, SUBMITTABLE, NOT_SUBMITTABLE = "DEMO", "SUBMITTABLE", "NOT SUBMITTABLE"
DEMO_NOTE = ("a CPU demo with smoke-sized models, data and batch sizes: not an MLPerf result. The package checker's "
             "RCP test is expected to fail for the demo's small batch sizes (no reference convergence point exists "
             "for them).")
# The system description fields a reader needs first (the full description is in the submission tree).
SYSTEM_KEYS = ["system_name", "submitter", "status", "number_of_nodes", "accelerators_per_node",
               "accelerator_model_name", "host_processor_model_name", "host_processors_per_node",
               "host_memory_capacity", "framework", "other_software_stack", "operating_system"]


def task_summary(rs, ts):
  runs = []
  for i, r in enumerate(ts.runs):
    attempts = [{"folder": rs.rel(p), "seed": (a or {}).get("seed"), "started": (a or {}).get("started"),
                 "note": (a or {}).get("stopped") or "interrupted; kept as it was"}
                for p, a in rs.attempts(ts.task, i)]
    runs.append(run_row(ts, i, rs.driver_record(rs.run_dir(ts.task, i)) or {}, rs.rel(rs.run_dir(ts.task, i)),
                        attempts))
  scaling = os.path.join(package.results_dir(rs, ts.task), "scaling.json")
  factor = read_json(scaling, "RCP scaling")["scaling_factor"] if os.path.exists(scaling) else None
  return task_block(ts, runs, rs.config.ruleset, factor)


def run_row(ts, i, rec, folder, attempts=()):
  """One run of a scored task as every report shows it; rec holds what the log cannot tell (the driver's
  record of the run: seed drawn, exit code, compliance verdict, cache drop)."""
  r = ts.runs[i]
  window = range(*ts.window) if ts.window else range(0)
  trainer = rec.get("trainer") or {}
  samples = trainer.get("samples_trained") or None
  return {
      "run": i, "folder": folder, "seed": rec.get("seed"), "seeds_logged": r.seeds,
      "status": scoring.CONVERGED if r.converged else scoring.NOT_CONVERGED,
      "time_to_train_min": None if r.time_to_train == scoring.INF else r.time_to_train,
      "logged_min": r.minutes, "in_window": i in window, "dropped": i in ts.dropped,
      "converged_at": r.convergence_epoch, "best_accuracy": r.best_accuracy, "evals": r.evals,
      "samples_trained": samples,
      "throughput": samples / (r.minutes * 60) if samples and r.minutes else None,
      "division": r.division, "exit_code": rec.get("exit_code"), "compliance": rec.get("compliance"),
      "compliance_passed": rec.get("compliance_passed"), "cache_clear": rec.get("cache_clear"),
      "watchdog_killed": rec.get("watchdog_killed"), "log_changed": rec.get("log_changed"),
      "recovered": rec.get("recovered", False), "reason": r.reason, "attempts": list(attempts),
      "data_service": rec.get("data_service"),
  }


def task_block(ts, runs, ruleset, scaling_factor=None):
  """A scored task with its run rows (run_row); scaling_factor: the package checker's RCP scaling, if any."""
  spec = task_spec.get(ts.task)
  window = range(*ts.window) if ts.window else range(0)
  kept = [runs[i]["time_to_train_min"] for i in window if i not in ts.dropped]
  term = task_spec.score_term(ts.task)  # None for a task outside the GP2BM score
  t = {"title": spec.title, "target": spec.target_accuracy, "accuracy_label": spec.accuracy_label,
       "progress_unit": spec.progress_unit, "sample_unit": spec.sample_unit, "weight": term and term.weight,
       "symbol": term and term.symbol, "window": list(ts.window) if ts.window else None, "latency_min": ts.latency,
       "valid": ts.valid, "reason": ts.reason, "dropped": ts.dropped,
       "non_converged": [i for i, r in enumerate(ts.runs) if not r.converged], "runs": runs,
       "spread": _spread(kept) if ts.valid else None}
  gbs = next((r.global_batch_size for r in ts.runs if r.global_batch_size), None)
  t["rcp"] = checks.rcp_lookup(ts.task, gbs, ruleset).line() if gbs else "no global_batch_size logged"
  if scaling_factor not in (None, 1.0) and ts.latency:  # shown only where the package checker scaled the time
    t["mlperf_rcp_scaling"] = {"factor": scaling_factor, "normalized_min": ts.latency * scaling_factor}
  return t


def _spread(times):
  times = [x for x in times if x is not None]
  if not times:
    return None
  return {"min": min(times), "max": max(times), "range_pct": 100 * (max(times) - min(times)) / min(times),
          "stdev": statistics.stdev(times) if len(times) > 1 else 0.0}


def score_block(tasks):
  latency = {n: t["latency_min"] for n, t in tasks.items()}
  value = task_spec.gp2bm_score(latency)
  terms = task_spec.GP2BM_SCORE
  parts = [f"{t.weight:g}/{latency[t.task]:.3f}" if latency.get(t.task) else f"{t.weight:g}/-" for t in terms]
  block = {"formula": task_spec.score_formula(), "latency_min": latency, "value": value,
           "computation": f"{' + '.join(parts)} = {'INVALID' if value is None else f'{value:.4f}'}",
           "symbols": {t.symbol: f"{t.task} olympic mean time to train, minutes" for t in terms}}
  if value is None:
    missing = [t.task for t in terms if t.task not in tasks]
    block["why_none"] = (f"the set has no {', '.join(missing)} runs" if missing
                         else "; ".join(t["reason"] for t in tasks.values() if not t["valid"]))
  scaled = {n: t.get("mlperf_rcp_scaling", {}).get("normalized_min") for n, t in tasks.items()}
  if any(scaled.values()):
    block["with_mlperf_rcp_scaling"] = task_spec.gp2bm_score({n: scaled[n] or latency[n] for n in latency})
  return block


def verdict(rs, tasks, pc, changed_logs):
  """DEMO, SUBMITTABLE or NOT SUBMITTABLE, with every reason."""
  c = rs.config
  reasons = []
  if c.forced:
    reasons.append("started with --force past failed preflight checks")
  for name, t in tasks.items():
    if not t["valid"]:
      reasons.append(t["reason"])
    for r in t["runs"]:
      where = f"{name} run {r['run']}"
      if r["division"] != "closed":
        reasons.append(f"{where}: logged submission_division {r['division']!r} (a submission needs closed)")
      if not r["compliance_passed"]:
        reasons.append(f"{where}: compliance checker {r['compliance'] or 'not run'}")
      if r["seeds_logged"] and r["seeds_logged"] != [r["seed"]]:
        reasons.append(f"{where}: the log's seed {r['seeds_logged']} is not the seed the driver drew ({r['seed']})")
      if not r["cache_clear"]:
        reasons.append(f"{where}: page cache not dropped before the run (cache_clear false)")
  reasons += [f"{rel}: changed after the run was recorded" for rel in changed_logs]
  if not pc["passed"]:
    reasons.append(f"package checker: {pc['summary'][:300]}")
  if c.demo:
    return {"kind": DEMO, "headline": f"DEMO: {DEMO_NOTE}", "reasons": reasons}
  if reasons:
    return {"kind": NOT_SUBMITTABLE, "headline": f"NOT SUBMITTABLE: {len(reasons)} reason(s) below",
            "reasons": reasons}
  return {"kind": SUBMITTABLE, "headline": "SUBMITTABLE: every run closed and compliant, page cache dropped before "
          "every run, package checker passed", "reasons": []}


def build(rs, scored, sysdesc, pc, preflight_rows, changed_logs):
  tasks = {name: task_summary(rs, ts) for name, ts in scored.items()}
  summary = {
      "verdict": verdict(rs, tasks, pc, changed_logs),
      "system": {k: sysdesc.get(k) for k in SYSTEM_KEYS if sysdesc.get(k)},
      "score": score_block(tasks),
      "set_folder": os.path.basename(rs.path), "set": rs.config.to_record(), "ruleset": rs.config.ruleset,
      "tasks": tasks, "package_checker": pc, "preflight": preflight_rows,
  }
  return relative_paths(summary, rs.path)


_ABS_PATH = re.compile(r"(?<![\w.:/])/(?![/\s]|dev/|proc/|sys/)[^\s'\",;:)\]]+")  # not URLs, not /dev etc.


def relative_paths(obj, base):
  """Every absolute path inside obj's strings rewritten relative to base (reports must not name a machine's
  folders; inside the set folder the relative path is the useful one anyway)."""
  if isinstance(obj, dict):
    return {k: relative_paths(v, base) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [relative_paths(v, base) for v in obj]
  if isinstance(obj, str):
    return _ABS_PATH.sub(lambda m: os.path.relpath(m.group(0), base), obj)
  return obj
