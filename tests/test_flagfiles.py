"""Every flagfile carries its reproduce command; every closed one goes through `--dry_run` (no data) and its logged
hyperparameters are checked against the RCP row of its global batch (the rcp json shipped with mlperf_logging) and
against the CHECK rules of the closed 4.0.0 ruleset (the compliance checker's own yaml files)."""
import json
import math
import os
import re

import pytest
import yaml
from mlperf_logging import compliance_checker, rcp_checker
from mlperf_logging.compliance_checker.mlp_compliance import is_integer

from conftest import ROOT, run_train
from tf_gp2bm import dry_run
from tf_gp2bm.tasks.spec import RULESET
from tf_gp2bm.tasks.bert.task import BertTask
from tf_gp2bm.tasks.spec import get as task_spec

FLAGFILES = sorted((ROOT / "flags").glob("*/*.flags"))
CLOSED = [p for p in FLAGFILES if "--noclosed" not in p.read_text().split()]
RULES = os.path.join(os.path.dirname(compliance_checker.__file__), f"training_{RULESET}")
RCPS = os.path.join(os.path.dirname(rcp_checker.__file__), f"training_{RULESET}")
# Keys the closed rules require that a run logs after init (the dry run ends at init_stop).
AFTER_INIT = {"run_start", "run_stop", "eval_accuracy", "block_start", "block_stop", "epoch_start", "epoch_stop",
              "eval_start", "eval_stop"}
# Our log key -> the RCP row's Hyperparams key, per task. gradient_accumulation_steps is how a system reaches the
# global batch, not a hyperparameter of the row's convergence.
RCP_KEYS = {
    "resnet": {"lars_opt_base_learning_rate": "opt_base_learning_rate",
               "lars_opt_learning_rate_warmup_epochs": "opt_learning_rate_warmup_epochs",
               "lars_opt_momentum": "opt_momentum", "lars_opt_weight_decay": "opt_weight_decay"},
    "bert": {k: k for k in ("opt_base_learning_rate", "opt_epsilon", "opt_learning_rate_training_steps",
                            "num_warmup_steps", "start_warmup_step", "opt_lamb_beta_1", "opt_lamb_beta_2",
                            "opt_lamb_weight_decay_rate")},
}


def _task(path):
  return path.parent.name


def _replicas(path):
  """The GPUs a flagfile is written for: N of an Nxgpu name, N x M of an NxMxgpu name (N nodes of M GPUs); a
  variant of a system adds _what (8xgpu_unpacked)."""
  nodes, per_node = re.fullmatch(r"(\d+)x(?:(\d+)x)?gpu(?:_[a-z]+)?", path.stem).groups()
  return int(nodes) * int(per_node or 1)


def _dry_run(path):
  r = run_train(f"--task={_task(path)}", f"--flagfile={path}", "--dry_run", f"--dry_run_replicas={_replicas(path)}",
                timeout=600)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  events = [json.loads(l.split(":::MLLOG ", 1)[1]) for l in r.stdout.splitlines() if ":::MLLOG " in l]
  return events, r.stdout


def _rcp_row(task, batch):
  with open(os.path.join(RCPS, f"rcps_{task}.json")) as f:
    rows = [row for row in json.load(f).values() if row["BS"] == batch]
  assert len(rows) == 1, f"no single {task} RCP row for global batch {batch}"
  return rows[0]["Hyperparams"]


def _closed_rules(benchmark, opt_name):
  files = ["common.yaml", "closed_common.yaml", f"closed_{benchmark}.yaml"]
  if benchmark == "resnet":
    files.append(f"closed_resnet_{opt_name}.yaml")
  rules = []
  for name in files:
    with open(os.path.join(RULES, name)) as f:
      rules += [r["KEY"] for r in yaml.safe_load(f) if "KEY" in r]
  return rules


@pytest.mark.parametrize("path", FLAGFILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_flagfile_carries_its_command(path):
  head = path.read_text().split("\n--")[0]
  assert head.startswith("#") and f"--task={_task(path)}" in head and "--flagfile=flags/" in head


@pytest.mark.slow
@pytest.mark.parametrize("path", CLOSED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_closed_flagfile_dry_run_matches_its_rcp_row_and_the_closed_rules(path):
  events, stdout = _dry_run(path)
  task = _task(path)
  keys = [e["key"] for e in events]
  value = {e["key"]: e["value"] for e in events}
  assert keys[0] == "init_start" and keys[-1] == "init_stop" and "run_start" not in keys
  assert value["submission_division"] == "closed" and value["submission_benchmark"] == task_spec(task).benchmark
  # The RCP row of this global batch: the convergence the package checker will hold the set to.
  row = _rcp_row(task, value["global_batch_size"])
  for ours, theirs in RCP_KEYS[task].items():
    assert value[ours] == pytest.approx(row[theirs], rel=1e-9), ours
  # The closed ruleset's requirements and checks on what init logs.
  for rule in _closed_rules(task_spec(task).benchmark, value.get("opt_name")):
    name = rule["NAME"]
    if name in AFTER_INIT or (task == "bert" and name == "train_samples"):  # BERT logs samples trained at the end
      continue
    if rule.get("REQ") == "EXACTLY_ONE":
      assert keys.count(name) == 1, f"{name}: logged {keys.count(name)} times"
    checks = rule.get("CHECK") or []
    for check in [checks] if isinstance(checks, str) else checks:
      if "s[" in check or "ll." in check:  # event order and timing: the full checker covers them on real runs
        continue
      for event in (e for e in events if e["key"] == name):
        assert eval(check, {"math": math, "is_integer": is_integer}, {"v": event}), (name, check)  # noqa: S307
  # The plan: evals up to the step cap, and for BERT nothing planned past the LR schedule's end.
  evals = [l for l in stdout.splitlines() if re.search(r"\] +eval +\d+ at step", l)]
  assert evals and "step cap:" in stdout
  if task == "bert":
    assert evals[-1].endswith("learning rate 0")
    if "--packed" in path.read_text().split():  # steps vary with the sequences counted: the cap leaves room
      cap = int(re.search(r"step cap: ([\d,]+) steps", stdout).group(1).replace(",", ""))
      assert value["opt_learning_rate_training_steps"] < cap < 1.1 * value["opt_learning_rate_training_steps"]
      assert "rows per update" in stdout
    else:
      assert re.search(rf"step cap: {value['opt_learning_rate_training_steps']:,} steps", stdout)


@pytest.mark.parametrize("path", [p for p in CLOSED if _task(p) == "bert"], ids=lambda p: p.name)
def test_closed_bert_flagfiles_fit_memory_and_split_the_eval_set(path):
  config = dry_run.parse_config("bert", [f"--flagfile={path}"])
  task = BertTask(dry_run.PlanningRuntime(_replicas(path)), config)
  # 64 x 512 runs out of memory on an 80 GB H100; 32 fits. Packed, a micro-batch is rows of 512 tokens.
  rows = task.rows_per_replica // task.accumulation_steps if config.packed else task.micro_batch_size
  assert rows <= 32
  assert task.micro_batch_size * task.accumulation_steps * _replicas(path) == config.global_batch_size
  assert task_spec("bert").eval_examples % (_replicas(path) * task.eval_batch_size) == 0  # no padding needed


def test_every_system_has_both_tasks():
  systems = {t: {p.stem for p in FLAGFILES if _task(p) == t and "_" not in p.stem} for t in ("resnet", "bert")}
  assert systems["resnet"] == systems["bert"] and {"1xgpu", "8xgpu", "2x8xgpu", "smoke"} <= systems["resnet"]
