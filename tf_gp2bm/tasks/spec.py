"""What the driver, scoring, reports and projection know about a task, importable without TensorFlow.

Each task package has a `spec.py` with one `SPEC`; `specs()` lists them. The driver loops over specs; only the
GP2BM score formula combines tasks, with the weights and symbols the specs carry.
"""
import dataclasses
import importlib
import math
from typing import Callable, Mapping, Optional, Tuple

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
  score_weight: float        # GP2BM score = sum(weight / olympic-mean minutes)
  score_symbol: str          # the task's latency in the score formula ("R" in 7.19/R)
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


_SPEC_MODULES = ("tf_gp2bm.tasks.resnet.spec", "tf_gp2bm.tasks.bert.spec")


def specs():
  """Every task's spec, in the order the score formula and reports list them."""
  return [importlib.import_module(m).SPEC for m in _SPEC_MODULES]


def names():
  return [s.name for s in specs()]


def get(name):
  for spec in specs():
    if spec.name == name:
      return spec
  raise KeyError(f"unknown task {name!r}; known: {', '.join(names())}")


def score_formula():
  """The GP2BM score as people read it: '7.19/R + 9.05/B'."""
  return " + ".join(f"{s.score_weight:g}/{s.score_symbol}" for s in specs())


def gp2bm_score(latencies):
  """sum(weight / latency minutes) over every task; None unless every task has a valid (positive) latency."""
  values = [latencies.get(s.name) for s in specs()]
  if any(v is None or not v > 0 or math.isinf(v) for v in values):
    return None
  return sum(s.score_weight / v for s, v in zip(specs(), values))
