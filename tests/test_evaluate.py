"""`run_benchmark.sh score`: vendors' MLPerf Training results checked, scored and ranked like our own sets.

The good systems are real MLPerf Training v4.0 results (tests/data/mlperf_training_v4.0, Apache-2.0, see its
README). Their expected olympic means are computed here from the logs' run_start/run_stop with plain json, not with
the project's parser, and written out as literals as well (computed once by hand the same way):
  ASUSTeK ESC_N8A-E12     R = mean of the middle 3 of 5 = 13.352089 min, B = mean of the middle 8 of 10 = 5.505125 min
  Quanta D74H-7U          R = 13.210822 min, B = 5.5830625 min
  score = 7.19/R + 9.05/B = 2.182415 and 2.165225.
Bad inputs are copies of those trees with files removed or logs damaged.
"""
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import openpyxl
import pytest

from tf_gp2bm.driver import checks, evaluate, ranking

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data", "mlperf_training_v4.0")
ASUS, QUANTA = "ASUSTeK/ESC_N8A-E12", "Quanta_Cloud_Technology/D74H-7U"
HAND = {ASUS: (13.352089, 5.505125, 2.182415), QUANTA: (13.210822, 5.5830625, 2.165225)}


def score_cmd(*args, out):
  return subprocess.run([os.path.join(REPO, "run_benchmark.sh"), "score", *map(str, args), f"--out={out}"],
                        capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable), timeout=900)


def olympic_from_logs(folder):
  """Minutes run_start -> run_stop of every result file, fastest and slowest dropped, the rest averaged."""
  minutes = []
  for path in glob.glob(os.path.join(folder, "result_*.txt")):
    times = {}
    for line in open(path):
      if line.startswith(":::MLLOG"):
        event = json.loads(line[len(":::MLLOG"):])
        if event["key"] in ("run_start", "run_stop"):
          times[event["key"]] = event["time_ms"]
    minutes.append((times["run_stop"] - times["run_start"]) / 60000)
  kept = sorted(minutes)[1:-1]
  return sum(kept) / len(kept)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
  out = tmp_path_factory.mktemp("scores")
  r = score_cmd(DATA, out=out)
  return r, out


def load(out, name):
  """A system's summary.json, found through the ranking's reports column."""
  folder = next(row["reports"] for row in csv.DictReader(open(os.path.join(out, "ranking.csv")))
                if row["system"] == name)
  return json.load(open(os.path.join(out, folder, "summary.json")))


@pytest.mark.slow
def test_real_systems_score_as_the_hand_computed_olympic_means(scored):
  r, out = scored
  assert r.returncode == 0, r.stdout + r.stderr
  for name, (hand_r, hand_b, hand_score) in HAND.items():
    org, system = name.split("/")
    results = os.path.join(DATA, org, "results", system)
    R, B = olympic_from_logs(os.path.join(results, "resnet")), olympic_from_logs(os.path.join(results, "bert"))
    assert (R, B) == (pytest.approx(hand_r, abs=1e-6), pytest.approx(hand_b, abs=1e-6))
    s = load(out, name)
    assert s["verdict"]["kind"] == evaluate.VALID, s["verdict"]
    assert s["tasks"]["resnet"]["latency_min"] == pytest.approx(R, abs=1e-9)
    assert s["tasks"]["bert"]["latency_min"] == pytest.approx(B, abs=1e-9)
    assert s["score"]["value"] == pytest.approx(7.19 / R + 9.05 / B, abs=1e-9)
    assert s["score"]["value"] == pytest.approx(hand_score, abs=1e-6)
    assert f"{name}: VALID  score {hand_score:.4f}" in r.stdout
    # Every copied log passes the pinned compliance checker, and both RCP checks pass.
    runs = [run for t in s["tasks"].values() for run in t["runs"]]
    assert len(runs) == 15 and all(run["compliance"] == "SUCCESS" for run in runs)
    assert all(t["rcp_check"]["passed"] for t in s["tasks"].values())
    assert s["system"]["system_name"] == system and s["system"]["accelerator_model_name"] == "NVIDIA H100-SXM5-80GB"
    assert "package checker not run: incomplete submission tree" in " ".join(s["verdict"]["notes"])
    folder = os.path.join(out, s["report_folder"])
    for report in ("summary.md", "summary.csv", "gp2bm.xlsx", "convergence_resnet.png", "convergence_bert.png"):
      assert os.path.getsize(os.path.join(folder, report)) > 0, report
    assert open(os.path.join(folder, "summary.md")).read().startswith(f"# GP2BM evaluation of {name}\n\n**VALID")


@pytest.mark.slow
def test_ranking_files_order_the_systems_by_score(scored):
  r, out = scored
  table = r.stdout.split("\nrank ", 1)[1].splitlines()
  assert table[1].startswith(f"1     {ASUS}") and table[2].startswith(f"2     {QUANTA}")
  rows = list(csv.DictReader(open(os.path.join(out, "ranking.csv"))))
  assert [(row["rank"], row["system"], row["verdict"]) for row in rows] == [("1", ASUS, "VALID"),
                                                                           ("2", QUANTA, "VALID")]
  assert float(rows[0]["score"]) == pytest.approx(HAND[ASUS][2], abs=1e-6)
  assert f"| 1 | {ASUS} | VALID | 2.1824 |" in open(os.path.join(out, "ranking.md")).read()
  wb = openpyxl.load_workbook(os.path.join(out, "ranking.xlsx"))
  assert wb.sheetnames == ["Ranking", "ASUSTeK_ESC_N8A-E12", "Quanta_Cloud_Technology_D74H-7U"]
  score_col = ranking.RANK_COLUMNS.index("score") + 1
  link = wb["Ranking"].cell(2, score_col).value
  assert link.startswith("='ASUSTeK_ESC_N8A-E12'!C")  # the ranking reads each system tab's own formula
  system_tab = wb["ASUSTeK_ESC_N8A-E12"]
  formula = system_tab[link.split("!", 1)[1]].value
  assert formula.startswith("=IFERROR(") and "/D" in formula


def copy_system(src, dst_org, name, tasks=("resnet", "bert")):
  org, system = src.split("/")
  dst = dst_org / "results" / name
  for task in tasks:
    shutil.copytree(os.path.join(DATA, org, "results", system, task), dst / task)
  (dst_org / "systems").mkdir(parents=True, exist_ok=True)
  shutil.copyfile(os.path.join(DATA, org, "systems", f"{system}.json"), dst_org / "systems" / f"{name}.json")
  return dst


def drop_run_stop(path):
  lines = [l for l in open(path) if '"key": "run_stop"' not in l]
  open(path, "w").writelines(lines)


@pytest.mark.slow
def test_bad_systems_each_get_their_verdict_and_the_others_are_still_scored(tmp_path):
  org = tmp_path / "Vendor"
  copy_system(ASUS, org, "no_bert", tasks=("resnet",))
  (org / "systems" / "no_bert.json").write_text("{ not json")
  (org / "results" / "empty_resnet" / "resnet").mkdir(parents=True)
  (org / "results" / "weird" / "resnet" / "result_0.txt").mkdir(parents=True)  # no log the checkers can read
  os.remove(copy_system(ASUS, org, "four_resnet", tasks=("resnet",)) / "resnet" / "result_4.txt")
  one_bad = copy_system(ASUS, org, "one_bad_log", tasks=("resnet",))
  drop_run_stop(one_bad / "resnet" / "result_2.txt")
  two_bad = copy_system(ASUS, org, "two_bad_logs", tasks=("resnet",))
  for i in (0, 3):
    drop_run_stop(two_bad / "resnet" / f"result_{i}.txt")
  a, b = (os.path.join(DATA, o, "results", s, t) for (o, s), t in
          [(ASUS.split("/"), "resnet"), (QUANTA.split("/"), "bert")])
  r = score_cmd(org, "--pair", f"{a}@3.1.0", b, out=tmp_path / "out")
  assert r.returncode == evaluate.EXIT_INVALID, r.stdout + r.stderr
  lines = r.stdout
  assert "Vendor/no_bert: INVALID" in lines and "  - no bert results" in lines
  assert re.search(r"  - system description: \S+no_bert.json: system description is not valid JSON", lines)
  assert "Vendor/empty_resnet: INVALID" in lines and "  - resnet: no result_*.txt in" in lines
  assert "Vendor/weird: INVALID" in lines and "  - IsADirectoryError: [Errno 21] Is a directory:" in lines
  assert "  - resnet: 4 result files; an MLPerf submission has exactly 5" in lines
  assert "  - resnet: 4 runs, the rules need at least 5" in lines
  s = load(tmp_path / "out", "Vendor/one_bad_log")  # one failed log is the dropped slowest (MLPerf's rule)
  assert s["tasks"]["resnet"]["valid"] and s["tasks"]["resnet"]["non_converged"] == [2]
  assert s["verdict"]["reasons"] == ["no bert results"]
  assert any("resnet result_2.txt: compliance checker FAILED" in n and "run_stop" in n for n in s["verdict"]["notes"])
  s = load(tmp_path / "out", "Vendor/two_bad_logs")
  assert "resnet: 2 non-converged runs (at most 1 may be dropped as the slowest)" in s["verdict"]["reasons"]
  pair = f"{ASUS.split('/')[0]}+{QUANTA.split('/')[0]}/ESC_N8A-E12 + D74H-7U"
  assert f"{pair}: INVALID" in lines
  assert "  - mixed rulesets: resnet 3.1.0, bert 4.0.0 (one system's benchmarks must come from one MLPerf round)" \
      in lines
  assert "  - ruleset 3.1.0: the GP2BM score is defined on MLPerf Training 4.0.0 results" in lines
  s = load(tmp_path / "out", pair)
  assert s["score"]["value"] is not None  # still computed, for reading; the verdict says why it does not rank
  rows = list(csv.DictReader(open(tmp_path / "out" / "ranking.csv")))
  assert len(rows) == 7 and all(row["rank"] == "-" and row["verdict"] == "INVALID" for row in rows)
  assert load(tmp_path / "out", "Vendor/weird")["verdict"]["headline"] == "INVALID: could not be scored"


def test_unreadable_or_unrecognised_paths_are_bad_input_and_nothing_is_scored(tmp_path):
  (tmp_path / "a_file").write_text("x")
  (tmp_path / "empty").mkdir()
  bench = tmp_path / "Org" / "results" / "sys" / "resnet"
  bench.mkdir(parents=True)
  (bench / "result_0.txt").write_text("")
  for args, message in [([tmp_path / "nope"], "nope: no such file or folder"),
                        ([DATA, tmp_path / "a_file"], "a_file: not a readable folder"),
                        ([tmp_path / "empty"], "empty: expected a submission tree"),
                        ([bench], "resnet: one benchmark's results; give its system's folder, or join"),
                        (["--pair", bench, bench], "both folders hold resnet results")]:
    r = score_cmd(*args, out=tmp_path / "out")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (tmp_path / "out").exists()  # every input is looked at before anything is written


def test_pair_joins_two_system_names_into_one_system(tmp_path):
  org = tmp_path / "HPE"
  for name, task in (("XD670_mxnet", "resnet"), ("XD670_pytorch", "bert")):
    (org / "results" / name / task).mkdir(parents=True)
  (org / "systems").mkdir()
  (org / "systems" / "XD670_mxnet.json").write_text("{}")
  entry = evaluate.pair_entry([str(org / "results" / "XD670_mxnet" / "resnet"), str(org / "results" / "XD670_pytorch")],
                              "4.0.0")
  assert entry.name == "HPE/XD670_mxnet + XD670_pytorch" and entry.org_dir == str(org)
  assert entry.folders == {"resnet": str(org / "results" / "XD670_mxnet" / "resnet"),
                           "bert": str(org / "results" / "XD670_pytorch" / "bert")}
  assert entry.rulesets == {"resnet": "4.0.0", "bert": "4.0.0"}
  assert set(entry.system_jsons) == {"XD670_mxnet", "XD670_pytorch"}


@pytest.mark.slow
def test_complete_tree_goes_through_the_package_checker_without_touching_it(tmp_path):
  org = tmp_path / "ASUSTeK"
  copy_system(ASUS, org, "ESC_N8A-E12")
  for task in ("resnet", "bert"):  # a stand-in implementation: the checker needs the folder, not its content
    impl = org / "benchmarks" / task / "implementations" / "vendor_impl"
    impl.mkdir(parents=True)
    (impl / "README.md").write_text("the vendor's code\n")
  before = {p: os.path.getmtime(p) for p in glob.glob(str(org / "**"), recursive=True)}
  r = score_cmd(org, out=tmp_path / "out")
  assert r.returncode == 0, r.stdout + r.stderr
  s = load(tmp_path / "out", ASUS)
  assert s["package_checker"]["passed"] and s["package_checker"]["summary"].startswith("SUCCESS")
  assert s["verdict"]["kind"] == evaluate.VALID and s["verdict"]["notes"] == []
  assert {p: os.path.getmtime(p) for p in glob.glob(str(org / "**"), recursive=True)} == before


def test_a_copied_log_fails_the_seed_check(tmp_path):
  logs = sorted(glob.glob(os.path.join(DATA, "ASUSTeK", "results", "ESC_N8A-E12", "resnet", "result_*.txt")))
  assert checks.seed_check(logs, "4.0.0").passed
  shutil.copyfile(logs[0], tmp_path / "result_0.txt")
  shutil.copyfile(logs[0], tmp_path / "result_1.txt")  # a vendor handing in one run twice
  v = checks.seed_check(glob.glob(str(tmp_path / "*.txt")), "4.0.0")
  assert not v.passed and "already logs the same seed" in v.summary


def test_names_that_collide_are_numbered_and_sheet_names_stay_within_excels_limit():
  used = set()
  assert [ranking.unique_name("a", used, lambda n: f"a-{n}") for _ in range(3)] == ["a", "a-2", "a-3"]
  used = {"Ranking"}
  sheets = [ranking._sheet_name("org/" + "x" * 40, used) for _ in range(2)]
  assert sheets == ["org_" + "x" * 27, "org_" + "x" * 24 + "~2"] and all(len(s) <= 31 for s in sheets)
