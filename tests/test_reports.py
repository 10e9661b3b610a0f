"""The reports of a finished set, on a crafted complete set (BERT run 3 did not converge): verdict first, the
system, the score and how it was computed (the xlsx recomputes it with formulas), per-run figures, dropped runs,
relative paths only, the submission tree with the vendor kernels, and the official result_summarizer's times.
"""
import csv
import glob
import json
import os
import re
import tarfile

import openpyxl
import pytest
from mlperf_logging.result_summarizer import result_summarizer
from pycel import ExcelCompiler

from tf_gp2bm.driver import flow, package, reports, summary
from tf_gp2bm.files import write_json_atomic

from conftest import run_module
from test_driver import QUIET, finish_crafted_set, make_set

KERNELS = "kernel_plugins.identity"  # tests/kernel_plugins: a real vendor module (importable from tests/)


@pytest.fixture(scope="module")
def finished_set(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("set")
  rs = make_set(tmp_path)
  rs.update_config(kernels=KERNELS)
  package.snapshot_kernels(rs.path, KERNELS)
  finish_crafted_set(rs)
  assert flow.finalize(rs, QUIET) == 0
  return rs


def load(rs):
  return json.load(open(os.path.join(rs.path, "summary.json")))


def test_summary_numbers(finished_set):
  s = load(finished_set)
  assert s["tasks"]["resnet"]["latency_min"] == pytest.approx((21 + 22 + 23) / 3)
  bert = [10, 11, 12, 14, 15, 16, 17, 18, 19]  # run 3 (13 min) did not converge: it is the dropped slowest
  assert s["tasks"]["bert"]["latency_min"] == pytest.approx(sum(bert[1:]) / 8)
  r, b = s["score"]["latency_min"]["resnet"], s["score"]["latency_min"]["bert"]
  assert s["score"]["value"] == pytest.approx(7.19 / r + 9.05 / b)
  assert s["score"]["computation"] == f"7.19/{r:.3f} + 9.05/{b:.3f} = {s['score']['value']:.4f}"
  assert s["tasks"]["bert"]["dropped"] == [0, 3] and s["tasks"]["bert"]["non_converged"] == [3]
  assert [x["seed"] for x in s["tasks"]["resnet"]["runs"]] == [1000, 1001, 1002, 1003, 1004]
  assert s["tasks"]["resnet"]["spread"]["min"] == 21 and s["tasks"]["resnet"]["spread"]["max"] == 23
  run0 = s["tasks"]["resnet"]["runs"][0]
  assert run0["converged_at"] == 34 and run0["throughput"] == pytest.approx(1000 / (20 * 60))


def test_reports_start_with_the_verdict_then_system_then_score(finished_set):
  s = load(finished_set)
  assert list(s)[:3] == ["verdict", "system", "score"] and s["verdict"]["kind"] == summary.DEMO
  assert "RCP test is expected to fail" in s["verdict"]["headline"]
  md = open(os.path.join(finished_set.path, "summary.md")).read().splitlines()
  assert md[2].startswith("**DEMO:") and md.index("## System") < md.index("## Score")
  assert any("GP2BM score = 7.19/R + 9.05/B = **" in l for l in md)
  assert any("| 3 |" in l and "not converged" in l and "dropped" in l for l in md)
  rows = list(csv.reader(open(os.path.join(finished_set.path, "summary.csv"))))
  assert rows[0] == ["verdict", "DEMO"] and rows[2][0].startswith("system: ")
  header = rows.index(reports.RUN_COLUMNS)
  assert len(rows) - header - 1 == 15
  # RCP scaling is shown only where the package checker applied it (these times sit inside the RCPs).
  scaled = [t for t in s["tasks"].values() if t.get("mlperf_rcp_scaling")]
  assert all(t["mlperf_rcp_scaling"]["factor"] != 1.0 for t in scaled)
  assert ("with the MLPerf RCP scaling" in "\n".join(md)) == bool(scaled)


def test_no_absolute_paths_in_reports(finished_set):
  for name in ("summary.json", "summary.md", "summary.csv"):
    text = open(os.path.join(finished_set.path, name)).read()
    assert finished_set.path not in text and os.path.dirname(finished_set.path) not in text, name
  s = load(finished_set)
  assert s["tasks"]["bert"]["runs"][0]["folder"] == "runs/bert/run_0"
  assert s["package_checker"]["log"] == "package_checker.log"


def test_xlsx_computes_the_score_with_formulas(finished_set):
  path = os.path.join(finished_set.path, "gp2bm.xlsx")
  ws = openpyxl.load_workbook(path)["MLPerf"]
  labels = {}
  for row in ws.iter_rows():
    labels.setdefault(row[0].value, row)  # the score block comes before the run rows
  assert ws["A2"].value == "verdict" and ws["B2"].value == "DEMO"
  score_cell = labels["GP2BM score"][2]
  assert str(score_cell.value).startswith("=IFERROR(") and score_cell.number_format == "0.0000"
  s = load(finished_set)
  excel = ExcelCompiler(filename=path)
  assert excel.evaluate(f"MLPerf!{score_cell.coordinate}") == pytest.approx(s["score"]["value"])
  for task in ("resnet", "bert"):
    mean = labels[task][3]
    assert str(mean.value).startswith("=IF(COUNT(")
    assert excel.evaluate(f"MLPerf!{mean.coordinate}") == pytest.approx(s["tasks"][task]["latency_min"])
  rows = list(ws.values)
  header = rows.index(tuple(reports.RUN_COLUMNS))
  runs_rows = [dict(zip(reports.RUN_COLUMNS, r)) for r in rows[header + 1:]]
  bert3 = [r for r in runs_rows if r["task"] == "bert" and r["run"] == 3][0]
  assert bert3["time_to_train_min"] == reports.NOT_CONVERGED_CELL and bert3["dropped"]
  assert [r["logged_min"] for r in runs_rows if r["task"] == "resnet"] == pytest.approx([20, 21, 22, 23, 30])


def test_plots_mark_target_and_dropped_runs(finished_set):
  for task in ("resnet", "bert"):
    png = os.path.join(finished_set.path, f"convergence_{task}.png")
    with open(png, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000


def test_submission_tree_kernels_and_package_checker(finished_set):
  org = package.org_dir(finished_set)
  for task, n in (("resnet", 5), ("bert", 10)):
    files = sorted(os.listdir(package.results_dir(finished_set, task)))
    assert [f for f in files if f.startswith("result_")] == [f"result_{i}.txt" for i in range(n)]
    impl = os.path.join(org, "benchmarks", task, "implementations", "tf_gp2bm")
    assert os.path.exists(os.path.join(impl, "flags_used", f"{task}.flags"))
    assert os.path.exists(os.path.join(impl, "tf_gp2bm", "driver", "scoring.py"))
    assert os.path.exists(os.path.join(impl, package.VENDOR_KERNELS, "kernel_plugins", "identity.py"))
  # The package checker below checks the system description too; its own checker says so by name.
  r = run_module("mlperf_logging.system_desc_checker", os.path.join(org, "systems", "test_box.json"), "training",
                 "4.0.0", "--log_output", os.path.join(finished_set.path, "sysdesc.log"))
  assert r.returncode == 0 and not re.search(r"ERROR|FAILED|Traceback", r.stdout + r.stderr), r.stdout + r.stderr
  s = load(finished_set)
  # One non-converged BERT run is accepted under olympic scoring; both sets sit inside their RCPs.
  assert s["package_checker"]["passed"], s["package_checker"]["summary"]


def test_times_agree_with_mlperf_result_summarizer(finished_set):
  s = load(finished_set)
  for task in ("resnet", "bert"):
    folder = package.results_dir(finished_set, task)
    per_file, _, score, _, factor = result_summarizer._compute_strong_score_standalone(
        task, "test_box", False, folder, "training", "4.0.0", return_full_scores=True)
    t = s["tasks"][task]
    window = t["runs"][t["window"][0]:t["window"][1]]
    theirs = sorted(per_file[f] for f in per_file)
    ours = sorted(r["logged_min"] for r in window if r["status"] == "converged")
    assert theirs == pytest.approx(ours)  # the summarizer skips a non-converged run like we do
    assert score == pytest.approx(t["latency_min"] * factor)


def test_package_tarball(finished_set):
  path = package.make_tarball(finished_set.path)
  with tarfile.open(path) as tar:
    names = tar.getnames()
  base = os.path.basename(finished_set.path)
  assert f"{base}/summary.md" in names and f"{base}/gp2bm.xlsx" in names
  assert f"{base}/runs/bert/run_9/mlperf.log" in names
  assert not [n for n in names if "/xla_cache" in n or f"/{package.KERNELS_SNAPSHOT}" in n]
  assert package.make_tarball(finished_set.path) != path  # a second package never overwrites the first


def test_official_set_is_not_submittable_with_every_reason(tmp_path):
  rs = make_set(tmp_path, mode="all")
  finish_crafted_set(rs, bert_failed=(3, 5), cache_clear=False)
  rec_path = os.path.join(rs.run_dir("resnet", 2), "driver.json")
  rec = json.load(open(rec_path))
  write_json_atomic(rec_path, dict(rec, seed=rec["seed"] + 1))  # what a second driver on the folder once did
  code = flow.finalize(rs, QUIET)
  s = load(rs)
  assert code == flow.EXIT_NOT_SUBMITTABLE and s["verdict"]["kind"] == summary.NOT_SUBMITTABLE
  reasons = "\n".join(s["verdict"]["reasons"])
  assert "bert: 2 non-converged runs" in reasons and "cache_clear false" in reasons
  assert "resnet run 2: the log's seed [1002] is not the seed the driver drew (1003)" in reasons
  assert s["score"]["value"] is None and "2 non-converged" in s["score"]["why_none"]
  assert open(os.path.join(rs.path, "summary.md")).read().splitlines()[2].startswith("**NOT SUBMITTABLE")
  ws = openpyxl.load_workbook(os.path.join(rs.path, "gp2bm.xlsx"))["MLPerf"]
  assert ws["B2"].value == summary.NOT_SUBMITTABLE and any(r[0] == "reason" for r in ws.values)
  assert glob.glob(os.path.join(rs.path, "convergence_*.png"))


def test_report_paths_become_relative_but_urls_and_devices_stay():
  text = "https://github.com/mlcommons/logging and /tmp/s/runs/x.log, 7.19/R; /dev/shm size; free at /tmp/s"
  assert summary.relative_paths({"k": [text]}, "/tmp/s") == {
      "k": ["https://github.com/mlcommons/logging and runs/x.log, 7.19/R; /dev/shm size; free at ."]}
