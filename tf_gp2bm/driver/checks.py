"""The official mlperf-logging checkers, called as the vendor would call them, plus the RCP look-up before a set.

Every checker runs as `python -m mlperf_logging.<tool>` in a child process with the ruleset pinned (the tools'
own defaults, 6.x, have no ResNet), and its verdict is reported as it is, with its full output kept in a file.
"""
import dataclasses
import json
import os
import re
import subprocess
import sys

from mlperf_logging import compliance_checker
from mlperf_logging.package_checker.seed_checker import SeedChecker
from mlperf_logging.rcp_checker import rcp_checker

from tf_gp2bm.tasks import spec as task_spec


@dataclasses.dataclass
class Verdict:
  passed: bool
  summary: str      # one line for tables
  output: str = ""  # the tool's full stdout+stderr


def _run_tool(args, cwd=None):
  out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd)
  return out.returncode, out.stdout + out.stderr


def logged_benchmark(log_path):
  """The submission_benchmark a result file logs, or None."""
  with open(log_path) as f:
    for line in f:
      if '"key": "submission_benchmark"' in line:
        return json.loads(line.split(":::MLLOG ", 1)[1])["value"]
  return None


def has_rules(benchmark, ruleset):
  """Whether the installed checker holds rules for `benchmark` (a task of our own, like a test's, has none)."""
  folder = os.path.join(os.path.dirname(compliance_checker.__file__), f"training_{ruleset}")
  return os.path.exists(os.path.join(folder, f"closed_{benchmark}.yaml"))


def compliance_check(log_path, ruleset, log_output):
  """Official compliance checker on one result file; prints SUCCESS or FAILED (exit status 1)."""
  benchmark = logged_benchmark(log_path)
  if benchmark and not has_rules(benchmark, ruleset):
    return Verdict(False, f"N/A: the {ruleset} rules have no {benchmark} benchmark", "")
  rc, text = _run_tool(["mlperf_logging.compliance_checker", "--usage", "training", "--ruleset", ruleset,
                        "--log_output", str(log_output), str(log_path)])
  passed = rc == 0 and "SUCCESS" in text
  if passed:
    return Verdict(True, "SUCCESS", text)
  # The checker's first ERROR/FAILED lines name the key that failed; keep a short form for the table.
  # ("Required EXACTLY_ONE occurrence of 'run_stop' but found 0", failed CHECK lines, tracebacks.)
  errors = [l.strip() for l in text.splitlines()
            if re.search(r"Required|CHECK|[Ff]ailed checks|Traceback|Error", l) and "ERROR - FAILED" not in l]
  return Verdict(False, "FAILED: " + ("; ".join(errors[:3])[:300] if errors else f"exit {rc}"), text)


def package_check(org_dir, ruleset, log_output, rcp_bypass=False):
  """Official package checker on <org>; it exits 0 either way, so the verdict is its closing line."""
  args = ["mlperf_logging.package_checker", str(org_dir), "training", ruleset, "--log_output", str(log_output)]
  if rcp_bypass:
    args.append("--rcp-bypass")
  rc, text = _run_tool(args)
  passed = rc == 0 and "PACKAGE CHECKER FOUND NO ERRORS, SUCCESS" in text
  lines = [l.strip() for l in text.splitlines()]
  key = [l for l in lines if re.search(r"^(ERROR|CRITICAL)|RCP Test|Seed checker|do(es)? not comply|"
                                       r"Incorrect number", l)]
  summary = "SUCCESS" if passed else "FAILED"
  if key:
    summary += ": " + "; ".join(dict.fromkeys(key))[:600]
  return Verdict(passed, summary, text)


def seed_check(result_files, ruleset):
  """The package checker's seed check on one benchmark's result files (each logs a seed, none logs another's);
  the tree around them is not needed."""
  errors = SeedChecker(ruleset)._assert_unique_seed_per_run(sorted(result_files))
  if not errors:
    return Verdict(True, "SUCCESS")
  return Verdict(False, "FAILED: " + "; ".join(errors)[:300], "\n".join(errors))


@dataclasses.dataclass
class RcpInfo:
  task: str
  batch_size: int
  kind: str               # exact | interpolated | stricter | missing
  reference_bs: list      # the RCP batch sizes used
  mean: float = None      # RCP olympic mean (epochs for ResNet, samples for BERT)
  min_mean: float = None  # lowest olympic mean of the set that still passes
  warning: str = ""

  def line(self):
    unit = task_spec.get(self.task).progress_unit
    if self.min_mean is None:
      return f"{self.task} GBS {self.batch_size}: {self.warning}"
    text = (f"{self.task} GBS {self.batch_size}: RCP {self.kind} (BS {'/'.join(map(str, self.reference_bs))}), "
            f"mean {self.mean:,.2f} {unit}, the set's olympic mean must be >= {self.min_mean:,.2f} {unit}")
    return text + (f". WARNING: {self.warning}" if self.warning else "")


def rcp_lookup(task, batch_size, ruleset):
  """Which pruned RCP the package checker will hold a set of this global batch size to (same rules as its
  check_directory), using the RCP json shipped in the installed mlperf_logging."""
  try:
    c = rcp_checker.RCP_Checker("training", ruleset, task_spec.get(task).benchmark, verbose=False)
  except KeyError:  # a task of our own, not an MLPerf benchmark: the tools hold no RCP for it
    return RcpInfo(task, batch_size, "missing", [], warning=f"ruleset {ruleset} has no RCP for a {task} benchmark")
  p = "pruned_rcps"
  rec = c._find_rcp(batch_size, p)
  if rec is not None:
    return RcpInfo(task, batch_size, "exact", [rec["BS"]], rec["RCP Mean"], rec["Min Epochs"])
  lo, hi = c._find_top_min_rcp(batch_size, p), c._find_bottom_max_rcp(batch_size, p)
  if lo is not None and hi is not None:
    _, rec = c._create_interp_rcp(batch_size, lo, hi)
    return RcpInfo(task, batch_size, "interpolated", [lo["BS"], hi["BS"]], rec["RCP Mean"], rec["Min Epochs"])
  if hi is not None:
    rec = c._find_min_rcp(p)
    return RcpInfo(task, batch_size, "stricter", [rec["BS"]], rec["RCP Mean"], rec["Min Epochs"],
                   warning=(f"GBS {batch_size} is below every RCP batch size; the set must beat the stricter "
                            f"BS-{rec['BS']} record or you must supply RCPs"))
  return RcpInfo(task, batch_size, "missing", [lo["BS"]] if lo else [],
                 warning=(f"no RCP applies to GBS {batch_size} (larger than every RCP batch size): the RCP check "
                          f"will fail; supply RCPs or run with --rcp_bypass and expect an audit"))


def flagfile_global_batch_size(path):
  """global_batch_size from an absl flagfile (`--global_batch_size=N`); None if the file does not set it."""
  values = {}
  with open(path) as f:
    for line in f:
      m = re.match(r"\s*--([A-Za-z0-9_]+)=(\S+)", line)
      if m:
        values[m.group(1)] = m.group(2)
  if "global_batch_size" in values:
    return int(values["global_batch_size"])
  return None
