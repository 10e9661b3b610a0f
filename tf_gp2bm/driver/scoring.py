"""GP2BM / MLPerf scoring of a set of runs, read from the runs' own mllog files.

Rules implemented (MLPerf Training rules, "Benchmark results" and "Scoring"):
  * time to train = run_stop.time_ms - run_start.time_ms, in minutes (what result_summarizer uses);
  * a run counts as converged only if run_stop says "success" AND a logged eval_accuracy (at or before run_stop)
    reaches the task's target; the target is a constant here, never read from the log, so a banner that claims
    success without the accuracy is caught;
  * per task: drop the fastest and the slowest run and average the rest ("olympic" mean); a non-converged run
    is infinitely slow, so a single one is the dropped slowest and two or more make the task invalid;
  * GP2BM score = sum over tasks of weight / latency in minutes (tasks.spec.gp2bm_score: 7.19/R + 9.05/B).
"""
import dataclasses
import math
import os

from mlperf_logging.compliance_checker import mlp_parser
from mlperf_logging.mllog import constants as C

from tf_gp2bm.tasks import spec as task_spec
from tf_gp2bm.tasks.spec import RULESET

INF = float("inf")
# How a run reads in every report.
CONVERGED, NOT_CONVERGED = "converged", "not converged"


class InvalidSet(ValueError):
  """A set of runs that the rules do not allow to be scored (too few runs, too many non-converged)."""


@dataclasses.dataclass
class RunResult:
  path: str
  task: str
  benchmark: str = None          # submission_benchmark as logged
  division: str = None           # submission_division as logged (closed | open)
  seeds: list = dataclasses.field(default_factory=list)
  cache_clear: bool = None       # cache_clear as logged (None: not logged)
  global_batch_size: int = None
  run_start_ms: float = None
  run_stop_ms: float = None
  stop_status: str = None        # run_stop metadata.status as logged
  evals: list = dataclasses.field(default_factory=list)   # [(epoch_num, accuracy)] in log order
  target: float = None
  reached_target: bool = False
  converged: bool = False
  reason: str = ""               # why the run does not count as converged ("" when it does)
  parse_errors: int = 0

  @property
  def minutes(self):
    """Logged run_stop - run_start in minutes, whether or not the run converged (None if either is missing)."""
    if self.run_start_ms is None or self.run_stop_ms is None:
      return None
    return (self.run_stop_ms - self.run_start_ms) / 60000.0

  @property
  def time_to_train(self):
    """Minutes for scoring: infinite for a run that did not converge."""
    return self.minutes if self.converged else INF

  @property
  def best_accuracy(self):
    return max((a for _, a in self.evals), default=None)

  @property
  def convergence_epoch(self):
    """epoch_num of the last eval before run_stop (the RCP checker's convergence point); None if not converged."""
    return self.evals[-1][0] if self.converged and self.evals else None

  def as_dict(self):
    d = dataclasses.asdict(self)
    d.update(minutes=self.minutes, time_to_train=None if self.time_to_train == INF else self.time_to_train,
             best_accuracy=self.best_accuracy, convergence_epoch=self.convergence_epoch)
    return d


def parse_run(path, task, ruleset=RULESET):
  """Reads one mllog file with mlperf-logging's own parser and decides whether the run converged."""
  try:
    spec = task_spec.get(task)
  except KeyError as e:
    raise ValueError(e.args[0]) from None
  r = RunResult(path=str(path), task=task, target=spec.target_accuracy)
  if not os.path.exists(path):
    r.reason = f"{path}: log file missing"
    return r
  loglines, errors = mlp_parser.parse_file(str(path), ruleset=ruleset)
  r.parse_errors = len(errors)
  starts, stops = [], []
  for ll in loglines:
    value, meta = ll.value.get("value"), ll.value.get("metadata") or {}
    if ll.key == "run_start":
      starts.append(ll.timestamp)
    elif ll.key == "run_stop":
      stops.append((ll.timestamp, meta.get("status")))
    elif ll.key == "submission_benchmark":
      r.benchmark = value
    elif ll.key == "submission_division":
      r.division = value
    elif ll.key == "global_batch_size":
      r.global_batch_size = value
    elif ll.key == "seed":
      r.seeds.append(value)
    elif ll.key == "cache_clear":
      r.cache_clear = value
    elif ll.key == "eval_accuracy":
      r.evals.append((meta.get("epoch_num"), value, ll.timestamp))
  if len(starts) == 1:
    r.run_start_ms = starts[0]
  if len(stops) == 1:
    r.run_stop_ms, r.stop_status = stops[0]
  # Only evals logged up to run_stop count; an eval logged after the clock stopped cannot make a run converge.
  stop_ms = r.run_stop_ms if r.run_stop_ms is not None else INF
  r.evals = [(e, a) for e, a, t in r.evals if t <= stop_ms and isinstance(a, (int, float))]
  r.reached_target = any(r.target <= a < 1.0 for _, a in r.evals)
  r.reason = _non_convergence_reason(r, starts, stops)
  r.converged = not r.reason
  return r


def has_run_stop(path, task, ruleset=RULESET):
  """Whether a (possibly unrecorded) run's log is closed: the trainer finished, whatever the outcome."""
  return os.path.exists(path) and parse_run(path, task, ruleset).run_stop_ms is not None


def _non_convergence_reason(r, starts, stops):
  if len(starts) != 1:
    return f"run_start logged {len(starts)} times (expected exactly 1)"
  if not stops:
    return "no run_stop in the log (crashed, killed or still running)"
  if len(stops) != 1:
    return f"run_stop logged {len(stops)} times (expected exactly 1)"
  expected = task_spec.get(r.task).benchmark
  if r.benchmark is not None and r.benchmark != expected:
    return f"log says submission_benchmark={r.benchmark!r}, expected {expected!r}"
  if r.stop_status != C.SUCCESS:
    return f"run_stop status is {r.stop_status!r}"
  if not r.reached_target:
    best = "no eval_accuracy logged" if r.best_accuracy is None else f"best eval_accuracy {r.best_accuracy:.4f}"
    return f"run_stop says success but {best} < target {r.target} (banner not trusted)"
  if r.run_stop_ms < r.run_start_ms:
    return "run_stop is earlier than run_start"
  return ""


def trimmed_mean(times):
  """Olympic mean of times (minutes; math.inf = non-converged): drop one fastest and one slowest, average the rest.

  Raises InvalidSet with the reason when fewer than 3 times are given or more than one is infinite.
  """
  times = [float(t) for t in times]
  if len(times) < 3:
    raise InvalidSet(f"{len(times)} runs: need at least 3 to drop the fastest and the slowest")
  failed = sum(1 for t in times if math.isinf(t) or math.isnan(t))
  if failed > 1:
    raise InvalidSet(f"{failed} non-converged runs (at most 1 may be dropped as the slowest)")
  kept = sorted(times)[1:-1]
  return sum(kept) / len(kept)


@dataclasses.dataclass
class TaskScore:
  task: str
  runs: list                      # RunResult, launch order
  window: tuple = None            # (first, last+1) indices of the scored consecutive runs
  latency: float = None           # trimmed mean, minutes; None when invalid
  valid: bool = False
  reason: str = ""
  dropped: list = dataclasses.field(default_factory=list)   # indices (into runs) of the dropped fastest/slowest

  def as_dict(self):
    return {"task": self.task, "window": list(self.window) if self.window else None, "latency_min": self.latency,
            "valid": self.valid, "reason": self.reason, "dropped": self.dropped,
            "non_converged": [i for i, r in enumerate(self.runs) if not r.converged],
            "runs": [r.as_dict() for r in self.runs]}


def _window_score(times):
  try:
    return trimmed_mean(times)
  except InvalidSet:
    return INF


def select_window(times, n):
  """Start index of the n consecutive runs (launch order) whose olympic score is the median of all windows.

  MLPerf allows launching M > N runs and reporting the N consecutive ones whose score is the median; with an even
  number of windows the slower of the two middle ones is taken (the conservative choice).
  """
  if len(times) < n:
    raise InvalidSet(f"{len(times)} runs, the rules need at least {n}")
  windows = sorted(range(len(times) - n + 1), key=lambda s: (_window_score(times[s:s + n]), s))
  return windows[len(windows) // 2]


def score_task(task, runs, min_runs=None):
  """Scores one task from its RunResults in launch order."""
  n = task_spec.get(task).min_runs if min_runs is None else min_runs
  ts = TaskScore(task=task, runs=list(runs))
  times = [r.time_to_train for r in ts.runs]
  try:
    start = select_window(times, n)
    ts.window = (start, start + n)
    window = times[start:start + n]
    ts.latency = trimmed_mean(window)
  except InvalidSet as e:
    ts.reason = f"{task}: {e}"
    return ts
  order = sorted(range(len(window)), key=lambda i: window[i])
  ts.dropped = [start + order[0], start + order[-1]]
  ts.valid = True
  failed = [start + i for i, t in enumerate(window) if math.isinf(t)]
  if failed:
    ts.reason = f"{task}: run {failed[0]} did not converge and is dropped as the slowest"
  return ts
