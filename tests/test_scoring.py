"""Scoring on crafted logs written by mlperf_logging.mllog itself (so the line format is the real one).

`write_log` makes a closed-division 4.0.0 log that passes the official compliance checker when the run reaches
the target; the other tests bend one thing at a time (no run_stop, a lying banner, ties, failed runs).
"""
import logging
import math
import os
import subprocess
import sys

import pytest

from mlperf_logging.mllog import mllog as mllog_impl
from mlperf_logging.mllog import constants as C

from tf_gp2bm.driver import scoring
from tf_gp2bm.tasks import spec as task_spec

T0 = 1_700_000_000_000  # ms; an arbitrary fixed wall clock for crafted logs

_RESNET_HP = {"opt_name": "lars", "lars_opt_base_learning_rate": 7.4, "lars_opt_end_learning_rate": 0.0001,
              "lars_opt_learning_rate_decay_poly_power": 2, "lars_opt_learning_rate_decay_steps": 27476,
              "lars_epsilon": 0.0, "lars_opt_learning_rate_warmup_epochs": 2, "lars_opt_momentum": 0.9,
              "lars_opt_weight_decay": 5e-05, "model_bn_span": 204}
_BERT_HP = {"opt_base_learning_rate": 4.25e-4, "opt_lamb_epsilon": 1e-6, "opt_learning_rate_training_steps": 6700,
            "opt_learning_rate_warmup_steps": 0, "num_warmup_steps": 0, "start_warmup_step": 0,
            "opt_lamb_beta_1": 0.9, "opt_lamb_beta_2": 0.999, "opt_lamb_weight_decay_rate": 0.01}


def write_log(path, task, minutes, accuracies, status="success", seed=1, run_stop=True, gbs=None,
              t0=T0, eval_after_stop=None):
  """Writes a crafted mllog file: init, run_start, one block+eval per accuracy, run_stop after `minutes`."""
  name = f"craft.{os.path.abspath(path)}"
  logger = logging.getLogger(name)
  logger.propagate = False
  logger.setLevel(logging.INFO)
  handler = logging.FileHandler(path, mode="w")
  logger.addHandler(handler)
  ml = mllog_impl.MLLogger(logger=logger, default_stack_offset=1)
  try:
    gbs = gbs or (1632 if task == "resnet" else 448)
    ml.event(C.SUBMISSION_ORG, "TestOrg", time_ms=t0)
    ml.event(C.SUBMISSION_PLATFORM, "1xTEST", time_ms=t0)
    ml.event(C.SUBMISSION_DIVISION, "closed", time_ms=t0)
    ml.event(C.SUBMISSION_STATUS, "onprem", time_ms=t0)
    ml.event(C.SUBMISSION_BENCHMARK, task, time_ms=t0)
    ml.event(C.CACHE_CLEAR, True, time_ms=t0)
    ml.start(C.INIT_START, time_ms=t0)
    ml.event(C.SEED, seed, time_ms=t0)
    ml.event(C.GLOBAL_BATCH_SIZE, gbs, time_ms=t0)
    ml.event(C.GRADIENT_ACCUMULATION_STEPS, 1, time_ms=t0)
    for k, v in (_RESNET_HP if task == "resnet" else _BERT_HP).items():
      ml.event(k, v, time_ms=t0)
    ml.event(C.TRAIN_SAMPLES, 1281167 if task == "resnet" else 2_400_000, time_ms=t0)
    ml.event(C.EVAL_SAMPLES, 50000 if task == "resnet" else 10000, time_ms=t0)
    ml.end(C.INIT_STOP, time_ms=t0 + 1000)
    start = t0 + 2000
    ml.start(C.RUN_START, time_ms=start)
    stop = start + minutes * 60000
    n = max(1, len(accuracies))
    for i, acc in enumerate(accuracies):
      # ResNet counts epochs (evals at 2, 6, ...), BERT samples; both go in metadata.epoch_num like the reference.
      epoch = 2 + 4 * i if task == "resnet" else 150_000 * (i + 1) + 2_000_000
      t = start + (i + 1) * (stop - start) / (n + 1)
      meta = {"first_epoch_num": epoch, "epoch_count": 4} if task == "resnet" else {"samples_count": epoch}
      ml.start(C.BLOCK_START, metadata=meta, time_ms=t)
      ml.end(C.BLOCK_STOP, metadata=meta, time_ms=t + 1)
      ml.start(C.EVAL_START, metadata={"epoch_num": epoch}, time_ms=t + 2)
      ml.end(C.EVAL_STOP, metadata={"epoch_num": epoch}, time_ms=t + 3)
      ml.event(C.EVAL_ACCURACY, acc, metadata={"epoch_num": epoch}, time_ms=t + 4)
    if run_stop:
      ml.end(C.RUN_STOP, metadata={"status": status}, time_ms=stop)
    if eval_after_stop is not None:
      ml.event(C.EVAL_ACCURACY, eval_after_stop, metadata={"epoch_num": 99}, time_ms=stop + 5)
  finally:
    logger.removeHandler(handler)
    handler.close()
  return str(path)


def good(tmp_path, task, minutes, i, **kw):
  acc = [0.5, 0.77] if task == "resnet" else [0.6, 0.73]
  return scoring.parse_run(write_log(tmp_path / f"{task}_{i}.txt", task, minutes, acc, seed=100 + i, **kw), task)


def test_crafted_log_passes_official_compliance_checker(tmp_path):
  for task in ("resnet", "bert"):
    path = write_log(tmp_path / f"{task}.txt", task, 10, [0.5, 0.8])
    out = subprocess.run([sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "training",
                          "--ruleset", "4.0.0", "--log_output", str(tmp_path / "c.log"), path],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr


def test_parse_converged_run(tmp_path):
  r = good(tmp_path, "resnet", 12.5, 0)
  assert r.converged and r.reason == ""
  assert r.minutes == pytest.approx(12.5)
  assert r.seeds == [100] and r.global_batch_size == 1632
  assert r.convergence_epoch == 6 and r.best_accuracy == pytest.approx(0.77)


def test_banner_success_without_target_is_not_converged(tmp_path):
  r = scoring.parse_run(write_log(tmp_path / "l.txt", "bert", 5, [0.6, 0.71]), "bert")
  assert r.stop_status == "success" and not r.converged
  assert "banner not trusted" in r.reason and r.time_to_train == math.inf
  assert r.minutes == pytest.approx(5)  # the logged time is still reported, it just does not count


def test_eval_after_run_stop_does_not_count(tmp_path):
  r = scoring.parse_run(write_log(tmp_path / "l.txt", "bert", 5, [0.6], eval_after_stop=0.9), "bert")
  assert not r.converged and r.best_accuracy == pytest.approx(0.6)


def test_missing_run_stop(tmp_path):
  r = scoring.parse_run(write_log(tmp_path / "l.txt", "resnet", 5, [0.8], run_stop=False), "resnet")
  assert not r.converged and "no run_stop" in r.reason and r.minutes is None


def test_aborted_run_and_missing_file(tmp_path):
  r = scoring.parse_run(write_log(tmp_path / "l.txt", "resnet", 5, [0.8], status="aborted"), "resnet")
  assert not r.converged and "aborted" in r.reason
  r = scoring.parse_run(tmp_path / "nope.txt", "resnet")
  assert not r.converged and "missing" in r.reason


def test_wrong_benchmark_in_log(tmp_path):
  r = scoring.parse_run(write_log(tmp_path / "l.txt", "bert", 5, [0.8]), "resnet")
  assert not r.converged and "submission_benchmark" in r.reason


def test_trimmed_mean_basic_ties_and_failures():
  assert scoring.trimmed_mean([1, 2, 3, 4, 100]) == pytest.approx(3)
  # ties: only one of the equal fastest/slowest is dropped
  assert scoring.trimmed_mean([2, 2, 2, 5, 5]) == pytest.approx(3)
  assert scoring.trimmed_mean([7] * 5) == pytest.approx(7)
  # one non-converged run is the dropped slowest
  assert scoring.trimmed_mean([1, 2, 3, 4, math.inf]) == pytest.approx(3)
  with pytest.raises(scoring.InvalidSet, match="2 non-converged"):
    scoring.trimmed_mean([1, 2, 3, math.inf, math.inf])
  with pytest.raises(scoring.InvalidSet, match="at least 3"):
    scoring.trimmed_mean([1, 2])


@pytest.mark.parametrize("failed", [0, 1, 2])
def test_score_task_with_non_converged_runs(tmp_path, failed):
  minutes = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
  runs = []
  for i, m in enumerate(minutes):
    if i < failed:  # the fastest logged times belong to runs that did not converge
      runs.append(scoring.parse_run(write_log(tmp_path / f"b{i}.txt", "bert", 1, [0.5], status="aborted"), "bert"))
    else:
      runs.append(good(tmp_path, "bert", m, i))
  ts = scoring.score_task("bert", runs)
  if failed == 0:
    assert ts.valid and ts.latency == pytest.approx(sum(minutes[1:-1]) / 8) and ts.dropped == [0, 9]
  elif failed == 1:
    assert ts.valid and ts.latency == pytest.approx(sum(minutes[2:]) / 8)
    assert ts.dropped == [1, 0] and "did not converge" in ts.reason
  else:
    assert not ts.valid and ts.latency is None and "2 non-converged" in ts.reason


def test_score_task_too_few_runs(tmp_path):
  runs = [good(tmp_path, "resnet", 10 + i, i) for i in range(4)]
  ts = scoring.score_task("resnet", runs)
  assert not ts.valid and "at least 5" in ts.reason


def test_extra_runs_choose_median_consecutive_window():
  # 7 runs for N=5: windows start 0,1,2 with olympic means 12, 13(ish), 20 -> the median window starts at 1
  times = [10, 11, 12, 13, 14, 30, 40]
  assert scoring.select_window(times, 5) == 1
  assert scoring.select_window(times[:5], 5) == 0


def test_score_formula():
  assert task_spec.gp2bm_score({"resnet": 7.19, "bert": 9.05}) == pytest.approx(2.0)
  assert task_spec.gp2bm_score({"resnet": 100.0, "bert": 50.0}) == pytest.approx(7.19 / 100 + 9.05 / 50)
  assert task_spec.gp2bm_score({"resnet": None, "bert": 50.0}) is None
  assert task_spec.gp2bm_score({"bert": 50.0}) is None  # every task is needed
  assert task_spec.score_formula() == "7.19/R + 9.05/B"


def test_task_facts_come_from_the_specs():
  # One source: scoring's targets and run counts are the specs'; the specs import no TensorFlow.
  out = subprocess.run([sys.executable, "-c", "import sys, tf_gp2bm.tasks.spec as s; "
                        "print([(x.name, x.target_accuracy, x.min_runs) for x in s.specs()]); "
                        "print('tensorflow' in sys.modules)"], capture_output=True, text=True)
  assert out.stdout.splitlines() == ["[('resnet', 0.759, 5), ('bert', 0.72, 10)]", "False"], out.stderr
