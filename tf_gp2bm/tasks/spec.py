"""What the driver, scoring and reports know about a task, importable without TensorFlow.

Each task package has a `spec.py` with one `SPEC`; `tf_gp2bm.tasks.specs()` lists them. The driver loops over
specs; only the GP2BM score formula (its weights live in the specs too) names the tasks it combines.
"""
import dataclasses
import importlib
from typing import Tuple

RULESET = "4.0.0"  # the MLPerf Training ruleset every log is checked against (the last that holds both tasks)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str                  # --task value and results folder name
  benchmark: str             # mllog submission_benchmark
  title: str                 # for people: "ResNet-50 v1.5 / ImageNet"
  target_accuracy: float     # closed-division quality target
  min_runs: int              # runs a set needs (the RFP's count)
  score_weight: float        # GP2BM score = sum(weight / olympic-mean minutes)
  progress_unit: str         # what eval_accuracy's epoch_num counts: "epochs" | "samples"
  eval_examples: int         # examples in one full evaluation
  data_flags: Tuple[str, ...] = ()  # trainer flags that point at data, e.g. ("data_dir",)


_SPEC_MODULES = ("tf_gp2bm.tasks.resnet.spec", "tf_gp2bm.tasks.bert.spec")


def specs():
  """Every task's spec, in the order the score formula and reports list them."""
  return [importlib.import_module(m).SPEC for m in _SPEC_MODULES]


def get(name):
  for spec in specs():
    if spec.name == name:
      return spec
  raise KeyError(f"unknown task {name!r}; known: {', '.join(s.name for s in specs())}")
