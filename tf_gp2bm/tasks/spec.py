"""What the driver, scoring, reports and projection know about a task, importable without TensorFlow.

Each registered task package (tasks/registry.py) has a `spec.py` with one `SPEC`; `specs()` lists them. The driver
loops over specs; only the GP2BM score combines tasks, and it names its own: a newly registered task does not join
the score.
"""
import dataclasses
import math
from typing import Callable, Mapping, Optional, Tuple

from tf_gp2bm.tasks import registry

RULESET = "4.0.0"  # the MLPerf Training ruleset every log is checked against (the last that holds both tasks)


@dataclasses.dataclass(frozen=True)
class StopPoint:
  """Where a run that needs `progress` (epochs or samples) to converge can actually stop: the first eval at or
  after it."""
  progress: float   # in the spec's progress_unit
  evals: int        # evaluations up to and including the stopping one
  samples: int      # training samples up to the stopping eval


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str                  # --task value and results folder name
  benchmark: str             # mllog submission_benchmark
  title: str                 # for people: "ResNet-50 v1.5 / ImageNet"
  target_accuracy: float     # closed-division quality target
  accuracy_label: str        # what eval_accuracy measures, for plots and tables
  min_runs: int              # runs a set needs (the RFP's count)
  progress_unit: str         # what eval_accuracy's epoch_num counts: "epochs" | "samples"
  sample_unit: str           # one training sample: "images" | "sequences"
  eval_examples: int         # examples in one full evaluation
  data_flags: Tuple[str, ...]          # trainer flags that point at data, e.g. ("data_dir",)
  demo_module: str                     # `python -m <module> --out=DIR` writes the CPU demo's data
  demo_data: Callable[[str], Mapping[str, Optional[str]]]    # demo folder -> values of data_flags
  stop_point: Callable[[int, float], StopPoint]              # (global batch, progress needed) -> where it stops
  check_data: Callable[[Mapping[str, Optional[str]]], list]  # data flag values -> [(check, status, detail)]
  samples_per_epoch: Optional[int] = None                    # the training set size, where progress is in epochs
  # Tasks that can train packed rows: data folder (or None) -> (samples per row, where that figure comes from)
  packing_factor: Optional[Callable[[Optional[str]], Tuple[float, str]]] = None

  def data_flag_option(self, flag):
    """The driver's option for one of the trainer's data flags: --resnet_data_dir, --bert_eval_dir, ..."""
    return f"--{self.name}_{flag}"


@dataclasses.dataclass(frozen=True)
class ScoreTerm:
  task: str      # a registered task name
  weight: float  # GP2BM score = sum(weight / olympic-mean minutes)
  symbol: str    # the task's latency in the score formula ("R" in 7.19/R)


# The RFP's GP2BM score: its tasks, weights and symbols, written here and nowhere else.
GP2BM_SCORE = (ScoreTerm("resnet", 7.19, "R"), ScoreTerm("bert", 9.05, "B"))


def specs():
  """Every registered task's spec, in registration order (the built-in tasks first, as reports list them)."""
  return [registry.spec(name) for name in registry.names()]


def names():
  return registry.names()


def get(name):
  if name not in registry.names():
    raise KeyError(f"unknown task {name!r}; known: {', '.join(names())}")
  return registry.spec(name)


def scored_specs():
  """The specs of the GP2BM score's tasks, in the score's order."""
  return [get(t.task) for t in GP2BM_SCORE]


def score_term(name):
  """The task's term of the GP2BM score, or None for a task the score does not combine."""
  return next((t for t in GP2BM_SCORE if t.task == name), None)


def score_formula():
  """The GP2BM score as people read it: '7.19/R + 9.05/B'."""
  return " + ".join(f"{t.weight:g}/{t.symbol}" for t in GP2BM_SCORE)


def gp2bm_score(latencies):
  """sum(weight / latency minutes) over the score's tasks; None unless each has a valid (positive) latency."""
  values = [latencies.get(t.task) for t in GP2BM_SCORE]
  if any(v is None or not v > 0 or math.isinf(v) for v in values):
    return None
  return sum(t.weight / v for t, v in zip(GP2BM_SCORE, values))
