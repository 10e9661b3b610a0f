"""The driver around the runs: set folders, seeds, resume bookkeeping, watchdog, reports, the submission tree
and the official package checker.

Scoring/reporting is tested on crafted logs (tests/test_scoring.write_log, written with mlperf_logging.mllog);
the real-run path (trainer + smoke flagfiles + demo data) is tested in test_real_smoke_set_resumes_after_kill,
which is skipped until those exist.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import openpyxl
import pytest

from tf_gp2bm.driver import checks, cli, package, runs, scoring, system_desc

from test_scoring import write_log

REPO = runs.REPO


def make_set(tmp_path, runs_per_task=None, mode="demo"):
  flags = tmp_path / "flags"
  flags.mkdir(exist_ok=True)
  config = {"mode": mode, "tasks": ["resnet", "bert"], "system": "smoke", "np": 1,
            "runs": runs_per_task or {"resnet": 5, "bert": 10}, "flagfiles": {},
            "data": {"resnet": {"data_dir": None}, "bert": {"data_dir": None, "eval_dir": None,
                                                            "init_checkpoint": None}},
            "org": "TestOrg", "system_name": "test box", "status": system_desc.STATUSES[2],
            "ruleset": "4.0.0", "watchdog_minutes": 1, "rcp_bypass": False}
  for task, gbs in (("resnet", 1632), ("bert", 448)):
    (flags / f"{task}.flags").write_text(f"--global_batch_size={gbs}\n")
    config["flagfiles"][task] = str(flags / f"{task}.flags")
  rs = runs.RunSet.create(str(tmp_path / "results"), config)
  return rs


def add_crafted_run(rs, task, i, minutes, converged=True, seed=None):
  """A finished run as the driver leaves it: its mllog plus driver.json (the trainer is not involved)."""
  d = rs.run_dir(task, i)
  os.makedirs(d)
  seed = seed if seed is not None else 1000 + i + (100 if task == "bert" else 0)
  if task == "resnet":  # 9 evals: converges at epoch 34, inside the BS-1632 RCP
    acc = [0.1 * k for k in range(1, 9)] + [0.77 if converged else 0.75]
  else:                 # 2 evals: converges at 2,300,000 samples, inside the BS-448 RCP
    acc = [0.6, 0.73 if converged else 0.70]
  write_log(os.path.join(d, "mlperf.log"), task, minutes, acc, seed=seed,
            status="success" if converged else "aborted", t0=1_700_000_000_000 + i * 3_600_000)
  from tf_gp2bm.files import write_json_atomic
  write_json_atomic(os.path.join(d, "driver.json"), {"task": task, "index": i, "seed": seed, "finished": True,
                                                     "exit_code": 0 if converged else 3, "cache_clear": True})


@pytest.fixture(scope="module")
def finished_set(tmp_path_factory):
  """A complete crafted set (BERT run 3 did not converge), finalized once for the tests below."""
  tmp_path = tmp_path_factory.mktemp("set")
  rs = make_set(tmp_path)
  package.snapshot_source(rs.path)
  from tf_gp2bm.files import write_json_atomic
  write_json_atomic(os.path.join(rs.path, "system.json"),
                    system_desc.build("TestOrg", "test box", system_desc.STATUSES[2], {}, demo=True))
  for i, m in enumerate([20, 21, 22, 23, 30]):
    add_crafted_run(rs, "resnet", i, m)
  for i in range(10):
    add_crafted_run(rs, "bert", i, 10 + i, converged=(i != 3))
  assert cli.finalize(rs, log=lambda *_: None) == 0
  return rs


def test_summary_numbers(finished_set):
  s = json.load(open(os.path.join(finished_set.path, "summary.json")))
  assert s["latency"]["resnet"] == pytest.approx((21 + 22 + 23) / 3)
  bert = [10, 11, 12, 14, 15, 16, 17, 18, 19]  # run 3 (13 min) did not converge: it is the dropped slowest
  assert s["latency"]["bert"] == pytest.approx(sum(bert[1:]) / 8)
  assert s["score"] == pytest.approx(7.19 / s["latency"]["resnet"] + 9.05 / s["latency"]["bert"])
  assert s["tasks"]["bert"]["dropped"] == [0, 3] and s["tasks"]["bert"]["non_converged"] == [3]
  assert [r["seed"] for r in s["tasks"]["resnet"]["runs"]] == [1000, 1001, 1002, 1003, 1004]


def test_xlsx_read_back(finished_set):
  ws = openpyxl.load_workbook(os.path.join(finished_set.path, "gp2bm.xlsx"))["MLPerf"]
  rows = list(ws.values)
  by_label = {r[0]: r for r in rows if r and r[0]}
  s = json.load(open(os.path.join(finished_set.path, "summary.json")))
  assert by_label["score"][1] == pytest.approx(s["score"])
  assert by_label["resnet trimmed mean (min)"][1] == pytest.approx(22.0)
  assert by_label["bert trimmed mean (min)"][1] == pytest.approx(s["latency"]["bert"])
  header = rows.index(tuple(cli.reports.RUN_COLUMNS))
  runs_rows = [dict(zip(cli.reports.RUN_COLUMNS, r)) for r in rows[header + 1:]]
  assert len(runs_rows) == 15
  bert3 = [r for r in runs_rows if r["task"] == "bert" and r["run"] == 3][0]
  assert bert3["status"] == "not converged" and bert3["dropped"] and bert3["time_to_train"] is None
  assert [r["minutes"] for r in runs_rows if r["task"] == "resnet"] == pytest.approx([20, 21, 22, 23, 30])
  assert [r["seed"] for r in runs_rows if r["task"] == "bert"] == [1100 + i for i in range(10)]


def test_plots_and_text_reports(finished_set):
  for task in ("resnet", "bert"):
    png = os.path.join(finished_set.path, f"convergence_{task}.png")
    with open(png, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000
  md = open(os.path.join(finished_set.path, "summary.md")).read()
  assert "GP2BM score" in md and "not converged" in md
  lines = open(os.path.join(finished_set.path, "summary.csv")).read().splitlines()
  assert lines[0].split(",")[:3] == ["task", "run", "seed"] and len(lines) == 16


def test_submission_tree_and_package_checker(finished_set):
  org = os.path.join(finished_set.path, "submission", "TestOrg")
  for task, n in (("resnet", 5), ("bert", 10)):
    files = sorted(os.listdir(os.path.join(org, "results", "test_box", task)))
    assert [f for f in files if f.startswith("result_")] == [f"result_{i}.txt" for i in range(n)]
    impl = os.path.join(org, "benchmarks", task, "implementations", "tf_gp2bm")
    assert os.path.exists(os.path.join(impl, "flags_used", f"{task}.flags"))
    assert os.path.exists(os.path.join(impl, "tf_gp2bm", "driver", "scoring.py"))
  assert checks.system_desc_check(os.path.join(org, "systems", "test_box.json"), "4.0.0",
                                  log_output=os.path.join(finished_set.path, "sysdesc.log")).passed
  s = json.load(open(os.path.join(finished_set.path, "summary.json")))
  # One non-converged BERT run is accepted under olympic scoring; both sets sit inside their RCPs.
  assert s["package_checker"]["passed"], s["package_checker"]["summary"]
  assert 1.0 <= s["tasks"]["resnet"]["mlperf_scaling_factor"]


def test_package_tarball(finished_set):
  path = package.make_tarball(finished_set.path)
  import tarfile
  with tarfile.open(path) as tar:
    names = tar.getnames()
  base = os.path.basename(finished_set.path)
  assert f"{base}/summary.md" in names and f"{base}/gp2bm.xlsx" in names
  assert f"{base}/runs/bert/run_9/mlperf.log" in names
  assert f"{base}/submission/TestOrg/results/test_box/bert/result_9.txt" in names
  assert package.make_tarball(finished_set.path) != path  # a second package never overwrites the first


def test_two_failed_runs_make_the_set_invalid(tmp_path):
  rs = make_set(tmp_path, {"resnet": 5, "bert": 10})
  for i in range(5):
    add_crafted_run(rs, "resnet", i, 20 + i, converged=i not in (1, 2))
  ts = cli.score_set(rs)["resnet"]
  assert not ts.valid and "2 non-converged" in ts.reason


def test_seeds_are_unique_and_attempts_are_kept(tmp_path):
  rs = make_set(tmp_path)
  add_crafted_run(rs, "resnet", 0, 20, seed=5)
  os.makedirs(rs.run_dir("resnet", 1))
  open(os.path.join(rs.run_dir("resnet", 1), "mlperf.log"), "w").write("partial\n")
  assert rs.is_finished(rs.run_dir("resnet", 0)) and not rs.is_finished(rs.run_dir("resnet", 1))
  moved = rs.move_aside(rs.run_dir("resnet", 1))
  assert moved.endswith("run_1.attempt-1") and open(os.path.join(moved, "mlperf.log")).read() == "partial\n"
  os.makedirs(rs.run_dir("resnet", 1))
  assert rs.move_aside(rs.run_dir("resnet", 1)).endswith("run_1.attempt-2")
  seeds = {rs.new_seed() for _ in range(200)}
  assert 5 not in seeds and all(0 <= s < 2 ** 31 for s in seeds)


def test_set_folder_is_never_reused_and_resume_refuses_other_flags(tmp_path):
  rs = make_set(tmp_path)
  assert runs.RunSet.latest(str(tmp_path / "results"), "demo") == rs.path
  a = cli.parse_args(["demo", f"--results_root={tmp_path / 'results'}", "--runs_bert=4"])
  config = dict(rs.config, runs={"resnet": 5, "bert": 4})
  with pytest.raises(SystemExit, match="differs from this command in runs"):
    cli.find_set(a, config, print)


def test_official_mode_never_fewer_runs():
  with pytest.raises(SystemExit):
    cli.parse_args(["all", "--runs_resnet=4"])
  with pytest.raises(SystemExit):
    cli.parse_args(["bert", "--runs_bert=9"])
  assert cli.parse_args(["demo", "--runs_bert=2"]).runs_bert == 2


def test_watchdog_kills_a_silent_process(tmp_path):
  # A real child that prints once and then hangs: the watchdog must kill its whole process group.
  cmd = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(120)"]
  t0 = time.monotonic()
  code, hang = runs.launch(cmd, str(tmp_path), watchdog_s=2, log=lambda *_: None)
  assert hang and code == -signal.SIGTERM and time.monotonic() - t0 < 60
  assert "started" in open(tmp_path / "console.log").read()


def test_rcp_lookup_matches_spec():
  assert checks.rcp_lookup("resnet", 1632, "4.0.0").min_mean == pytest.approx(33.80, abs=0.01)
  assert checks.rcp_lookup("resnet", 256, "4.0.0").kind == "stricter"
  assert checks.rcp_lookup("bert", 512, "4.0.0").min_mean == pytest.approx(2_280_211, abs=2)
  assert checks.rcp_lookup("bert", 10 ** 6, "4.0.0").kind == "missing"


def test_system_description_fields():
  d = system_desc.build("Org", "box", "Preview", {"cooling": "air"}, demo=False)
  assert d["cooling"] == "air" and all(isinstance(v, str) for v in d.values())
  assert "host_networking" in system_desc.missing_fields(d)
  with pytest.raises(ValueError, match="must be one of"):
    system_desc.build("Org", "box", "onprem", {})
  with pytest.raises(ValueError, match="--system_field"):
    system_desc.parse_field_flags(["colour=blue"])


SMOKE_FLAGS = os.path.join(REPO, "flags", "resnet", "smoke.flags")


@pytest.mark.skipif(not (os.path.exists(SMOKE_FLAGS) and os.path.exists(os.path.join(REPO, "tf_gp2bm", "train.py"))
                         and importlib.util.find_spec("data_prep.demo.imagenet")),
                    reason="needs the real trainer, flags/resnet/smoke.flags and data_prep.demo.imagenet")
def test_real_smoke_set_resumes_after_kill(tmp_path):
  """The real path: run_benchmark.sh demo (ResNet only, 2 short smoke runs), killed during run 1, rerun with
  the same command. It must keep run 0, move the interrupted run 1 aside, redo it, and end with 2 results."""
  flags_dir = tmp_path / "flags" / "resnet"
  flags_dir.mkdir(parents=True)
  # The repository's smoke config, cut to one epoch without XLA so the test stays short; convergence is not
  # the point here (a non-converged run is still a finished run).
  (flags_dir / "smoke.flags").write_text(open(SMOKE_FLAGS).read() + "\n--train_epochs=1\n--xla=false\n")
  # The demo's own data cache (gitignored), generated once if absent.
  demo_data = os.path.join(REPO, "results", "demo_data")
  cmd = [os.path.join(REPO, "run_benchmark.sh"), "demo", "--tasks", "resnet", "--runs_resnet=2",
         f"--results_root={tmp_path / 'results'}", f"--demo_data_dir={demo_data}",
         f"--flags_dir={tmp_path / 'flags'}", "--force"]  # --force: preflight verdicts are not under test here
  env = dict(os.environ, PYTHON=sys.executable)
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
  deadline = time.monotonic() + 900
  run1 = None
  while time.monotonic() < deadline and proc.poll() is None:
    sets = list((tmp_path / "results").glob("*-demo"))
    if sets and (sets[0] / "runs" / "resnet" / "run_1" / "driver.json").exists():
      run1 = sets[0] / "runs" / "resnet" / "run_1"
      break
    time.sleep(1)
  assert run1 is not None, proc.communicate()[0].decode()[-3000:]
  time.sleep(3)
  proc.send_signal(signal.SIGTERM)
  out1 = proc.communicate(timeout=120)[0].decode()
  assert proc.returncode != 0
  set_dir = run1.parent.parent.parent
  run0_files = sorted(os.listdir(set_dir / "runs" / "resnet" / "run_0"))
  first_seed = json.load(open(run1 / "driver.json"))["seed"]
  assert not json.load(open(run1 / "driver.json"))["finished"], out1[-2000:]

  out2 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
  assert out2.returncode in (0, 3), out2.stdout[-3000:] + out2.stderr[-3000:]
  assert list((tmp_path / "results").glob("*-demo")) == [set_dir]  # same set continued, not a new one
  attempt = set_dir / "runs" / "resnet" / "run_1.attempt-1"
  assert json.load(open(attempt / "driver.json"))["seed"] == first_seed  # the interrupted attempt is kept
  assert sorted(os.listdir(set_dir / "runs" / "resnet" / "run_0")) == run0_files  # run 0 was not redone
  rs = runs.RunSet(str(set_dir))
  assert rs.is_complete()
  seeds = [rs.driver_record(rs.run_dir("resnet", i))["seed"] for i in range(2)]
  assert len(set(seeds + [first_seed])) == 3
  system = package.safe_name(rs.config["system_name"])
  results = sorted(os.listdir(set_dir / "submission" / "GP2BM-demo" / "results" / system / "resnet"))
  assert [f for f in results if f.startswith("result_")] == ["result_0.txt", "result_1.txt"]
  for i in range(2):  # every run's own files are there and the submitted file is its log, byte for byte
    run_dir = set_dir / "runs" / "resnet" / f"run_{i}"
    assert (run_dir / "console.log").exists() and (run_dir / "run.json").exists()
    if (run_dir / "mlperf.log").exists():
      assert (run_dir / "mlperf.log").read_bytes() == \
          (set_dir / "submission" / "GP2BM-demo" / "results" / system / "resnet" / f"result_{i}.txt").read_bytes()
  assert (attempt / "console.log").exists()
  for i in range(2):  # on real trainer output, the re-derived verdict agrees with the trainer's own record
    rec = rs.driver_record(rs.run_dir("resnet", i))
    result = scoring.parse_run(os.path.join(rs.run_dir("resnet", i), "mlperf.log"), "resnet")
    assert result.converged == (rec["exit_code"] == 0) and rec["compliance"]
    if rec["trainer"] and rec["exit_code"] in (0, 3):
      assert result.seeds == [rec["seed"]] and result.minutes is not None
  s = json.load(open(set_dir / "summary.json"))
  assert len(s["tasks"]["resnet"]["runs"]) == 2 and s["score"] is None  # ResNet only: no GP2BM score
  assert "need at least 3" in s["tasks"]["resnet"]["reason"]


def test_official_mode_refuses_on_failed_preflight(tmp_path):
  # No GPU, no data, no system fields here: official mode must stop before creating a set folder.
  out = subprocess.run([os.path.join(REPO, "run_benchmark.sh"), "resnet", "--system=1xgpu", "--org=TestOrg",
                        "--status=Preview", f"--results_root={tmp_path / 'results'}"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable), timeout=300)
  assert out.returncode == 1, out.stdout + out.stderr
  assert "GPUs visible to TensorFlow       FAIL" in out.stdout and "pass --force" in out.stdout
  assert "ResNet dataset" in out.stdout and not list((tmp_path / "results").glob("*-resnet"))
