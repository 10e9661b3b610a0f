"""The driver around the runs: the command line (parsed once into a SetConfig), set folders, seeds, resume
bookkeeping, the launch engine, the watchdog and the terminal digest.

Crafted logs (tests/test_scoring.write_log, written with mlperf_logging.mllog) stand in for finished runs where
the trainer is not the point; test_real_smoke_set_resumes_after_kill runs the real trainer through
run_benchmark.sh. Reports are tested in test_reports.py, faults in test_faults_driver.py.
"""
import dataclasses
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tf_gp2bm.driver import checks, cli, digest, flow, package, runs, scoring, system_desc
from tf_gp2bm.errors import InputError
from tf_gp2bm.files import repo_root, sha256_file, write_json_atomic

from test_scoring import write_log

REPO = repo_root()


def make_set(tmp_path, runs_per_task=None, mode="demo"):
  """A set folder as the driver creates it (set.json from a parsed command line), without any run."""
  flags = tmp_path / "flags"
  for task, gbs in (("resnet", 1632), ("bert", 448)):
    (flags / task).mkdir(parents=True, exist_ok=True)
    (flags / task / "test.flags").write_text(f"--global_batch_size={gbs}\n")
  runs_per_task = runs_per_task or {"resnet": 5, "bert": 10}
  argv = [mode, f"--flags_dir={flags}", f"--results_root={tmp_path / 'results'}", "--org=TestOrg",
          f"--status={system_desc.RDI}"] + [f"--runs_{t}={n}" for t, n in runs_per_task.items()]
  config = dataclasses.replace(cli.parse_args(argv), system="test", watchdog_minutes=1)
  return runs.RunSet.create(str(tmp_path / "results"), config.record(1, "test box"))


def add_crafted_run(rs, task, i, minutes, converged=True, seed=None, cache_clear=True):
  """A finished run as the driver leaves it: its mllog plus driver.json (the trainer is not involved)."""
  d = rs.run_dir(task, i)
  os.makedirs(d)
  seed = seed if seed is not None else 1000 + i + (100 if task == "bert" else 0)
  if task == "resnet":  # 9 evals: converges at epoch 34, inside the BS-1632 RCP
    acc = [0.1 * k for k in range(1, 9)] + [0.77 if converged else 0.75]
  else:                 # 2 evals: converges at 2,300,000 samples, inside the BS-448 RCP
    acc = [0.6, 0.73 if converged else 0.70]
  log = write_log(os.path.join(d, "mlperf.log"), task, minutes, acc, seed=seed,
                  status="success" if converged else "aborted", t0=1_700_000_000_000 + i * 3_600_000)
  write_json_atomic(os.path.join(d, "driver.json"), {
      "task": task, "index": i, "seed": seed, "finished": True, "exit_code": 0 if converged else 3,
      "cache_clear": cache_clear, "compliance": "SUCCESS", "compliance_passed": True, "division": "closed",
      "log_sha256": sha256_file(log), "trainer": {"samples_trained": 1000 * (i + 1)}})


def finish_crafted_set(rs, bert_failed=(3,), **kw):
  package.snapshot_source(rs.path)
  write_json_atomic(os.path.join(rs.path, "system.json"),
                    system_desc.build("TestOrg", "test box", system_desc.RDI, {}, demo=True))
  for i, m in enumerate([20, 21, 22, 23, 30]):
    add_crafted_run(rs, "resnet", i, m, **kw)
  for i in range(10):
    add_crafted_run(rs, "bert", i, 10 + i, converged=i not in bert_failed, **kw)


QUIET = digest.Terminal(stream=io.StringIO())


def test_two_failed_runs_make_the_set_invalid(tmp_path):
  rs = make_set(tmp_path, {"resnet": 5, "bert": 10})
  for i in range(5):
    add_crafted_run(rs, "resnet", i, 20 + i, converged=i not in (1, 2))
  ts = flow.score_set(rs)["resnet"]
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
  assert all(0 <= s < 2 ** runs.SEED_BITS for s in seeds)


def test_new_seed_never_repeats_a_used_seed(tmp_path, monkeypatch):
  # A 2-bit seed space with 0, 1 and 2 used (2 by an interrupted attempt): only 3 is left, and a draw that
  # ignored the used seeds would hit one of them 3 times in 4.
  monkeypatch.setattr(runs, "SEED_BITS", 2)
  rs = make_set(tmp_path)
  for i, seed in enumerate((0, 1, 2)):
    add_crafted_run(rs, "resnet", i, 20, seed=seed)
  rs.move_aside(rs.run_dir("resnet", 2))
  assert rs.used_seeds() == {0, 1, 2}
  assert {rs.new_seed() for _ in range(50)} == {3}


def test_set_folder_is_never_reused_and_resume_refuses_other_flags(tmp_path):
  rs = make_set(tmp_path)
  assert runs.RunSet.latest(str(tmp_path / "results"), "demo") == rs.path
  config = cli.parse_args(["demo", f"--results_root={tmp_path / 'results'}", "--runs_bert=4"])
  record = dataclasses.replace(rs.config, runs={"resnet": 5, "bert": 4})
  with pytest.raises(InputError, match="differs from this command in runs"):
    flow.find_set(config, record)
  assert flow.find_set(config, rs.config).path == rs.path


def test_official_mode_never_fewer_runs():
  with pytest.raises(SystemExit):
    cli.parse_args(["all", "--runs_resnet=4"])
  with pytest.raises(SystemExit):
    cli.parse_args(["bert", "--runs_bert=9"])
  assert cli.parse_args(["demo", "--runs_bert=2"]).runs["bert"] == 2


def test_watchdog_kills_a_silent_process(tmp_path):
  # A real child that prints once and then hangs: the watchdog must kill its whole process group.
  cmd = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(120)"]
  t0 = time.monotonic()
  code, hang = runs.run_watched(cmd, str(tmp_path), watchdog_s=2, ui=QUIET)
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


@pytest.mark.slow
@pytest.mark.skipif(not (os.path.exists(SMOKE_FLAGS) and os.path.exists(os.path.join(REPO, "tf_gp2bm", "train.py"))
                         and importlib.util.find_spec("data_prep.demo.imagenet")),
                    reason="needs the real trainer, flags/resnet/smoke.flags and data_prep.demo.imagenet")
def test_real_smoke_set_resumes_after_kill(tmp_path):
  """The real path: run_benchmark.sh demo (ResNet only, 2 short smoke runs), killed during run 1, rerun with
  the same command. It must keep run 0, move the interrupted run 1 aside, redo it, and end with 2 results."""
  flags_dir = tmp_path / "flags" / "resnet"
  flags_dir.mkdir(parents=True)
  # The repository's smoke config, cut to two epochs (one eval) without XLA so the test stays short; convergence is not
  # the point here (a non-converged run is still a finished run).
  (flags_dir / "smoke.flags").write_text(open(SMOKE_FLAGS).read() + "\n--train_epochs=2\n--xla=false\n")
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
  # The terminal digest: a start line, eval lines and a result line per run, set progress with an ETA, the
  # TensorBoard command; no raw MLLOG and no TensorFlow chatter.
  text = out1 + out2.stdout + out2.stderr
  assert ":::MLLOG" not in text and "tensorflow/" not in text and "XlaSerializedCacheEntry" not in text
  assert "[resnet 2/2] seed" in out2.stdout and "[resnet 2/2] eval at epoch" in out2.stdout
  assert "[resnet 2/2] time to train" in out2.stdout and "compliance" in out2.stdout
  assert "[set] 1/1 runs done" in out2.stdout and "tensorboard --logdir" in out2.stdout
  assert "DEMO:" in out2.stdout and "RCP test is expected to fail" in out2.stdout
  assert list((tmp_path / "results").glob("*-demo")) == [set_dir]  # same set continued, not a new one
  attempt = set_dir / "runs" / "resnet" / "run_1.attempt-1"
  assert json.load(open(attempt / "driver.json"))["seed"] == first_seed  # the interrupted attempt is kept
  assert sorted(os.listdir(set_dir / "runs" / "resnet" / "run_0")) == run0_files  # run 0 was not redone
  rs = runs.RunSet(str(set_dir))
  assert rs.is_complete()
  seeds = [rs.driver_record(rs.run_dir("resnet", i))["seed"] for i in range(2)]
  assert len(set(seeds + [first_seed])) == 3
  system = package.safe_name(rs.config.system_name)
  results = sorted(os.listdir(set_dir / "submission" / "GP2BM-demo" / "results" / system / "resnet"))
  assert [f for f in results if f.startswith("result_")] == ["result_0.txt", "result_1.txt"]
  for i in range(2):  # every run's own files are there and the submitted file is its log, byte for byte
    run_dir = set_dir / "runs" / "resnet" / f"run_{i}"
    assert (run_dir / "console.log").exists() and (run_dir / "run.json").exists()
    assert (run_dir / "mlperf.log").read_bytes() == \
        (set_dir / "submission" / "GP2BM-demo" / "results" / system / "resnet" / f"result_{i}.txt").read_bytes()
  assert (attempt / "console.log").exists()
  for i in range(2):  # on real trainer output, the re-derived verdict agrees with the trainer's own record
    rec = rs.driver_record(rs.run_dir("resnet", i))
    result = scoring.parse_run(os.path.join(rs.run_dir("resnet", i), "mlperf.log"), "resnet")
    assert result.converged == (rec["exit_code"] == 0) and rec["compliance"]
    assert rec["trainer"] and rec["exit_code"] in (0, 3), rec  # both runs end (converged or not), not crash
    assert result.seeds == [rec["seed"]] and result.minutes is not None
  s = json.load(open(set_dir / "summary.json"))
  assert len(s["tasks"]["resnet"]["runs"]) == 2 and s["score"]["value"] is None  # ResNet only: no GP2BM score
  assert "need at least 3" in s["tasks"]["resnet"]["reason"] and s["verdict"]["kind"] == "DEMO"
  assert s["tasks"]["resnet"]["runs"][1]["attempts"][0]["folder"] == "runs/resnet/run_1.attempt-1"


@pytest.mark.slow
def test_official_mode_refuses_on_failed_preflight(tmp_path):
  # No GPU, no data, no system fields here: official mode must stop before creating a set folder.
  out = subprocess.run([os.path.join(REPO, "run_benchmark.sh"), "resnet", "--system=1xgpu", "--org=TestOrg",
                        "--status=Preview", f"--results_root={tmp_path / 'results'}"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable), timeout=300)
  assert out.returncode == 1, out.stdout + out.stderr
  assert re.search(r"GPUs visible to TensorFlow +FAIL", out.stdout) and "pass --force" in out.stdout
  assert "ResNet dataset" in out.stdout and not list((tmp_path / "results").glob("*-resnet"))


def test_help_answers_and_every_option_has_help_and_default():
  out = subprocess.run([os.path.join(REPO, "run_benchmark.sh"), "--help"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHON=sys.executable), timeout=60)
  assert out.returncode == 0, out.stderr[-2000:]
  text = " ".join(out.stdout.split())
  for action in cli.build_parser()._actions:
    if action.option_strings and action.dest != "help":
      assert action.help, action.option_strings
      assert f"{action.option_strings[0]}" in text
  assert text.count("(default:") >= len([a for a in cli.build_parser()._actions if a.option_strings]) - 1
  for option in ("--hosts", "--hostfile", "--hvd_args", "--launcher", "--kernels", "--verbose"):
    assert option in text


def test_command_line_is_parsed_once_into_a_frozen_set_config(tmp_path):
  config = cli.parse_args(["all", "--system=8xgpu", "--resnet_data_dir=rel/imagenet", "--org=ACME",
                           "--status=Preview", "--hosts=n1:8,n2:8", "--hvd_args=--network-interface=ib0",
                           "--kernels=acme.kernels"])
  assert isinstance(config, cli.cfg.SetConfig) and config.official and config.tasks == ("resnet", "bert")
  assert config.data["resnet"]["data_dir"] == os.path.abspath("rel/imagenet")
  assert config.launch.np is None and config.launch.hosts == "n1:8,n2:8"  # every slot of the hosts
  assert cli.parse_args(["all"]).launch.np == 8 and cli.parse_args(["demo"]).system == "smoke"
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.np = 3
  rec = config.record(16, "acme_2x8")
  assert rec.launch.hosts == "n1:8,n2:8" and rec.kernels == "acme.kernels" and rec.np == rec.launch.np == 16
  assert set(cli.cfg.RESUME_KEYS) <= set(rec.to_record())


def test_set_json_round_trips_typed_and_a_foreign_one_is_bad_input(tmp_path):
  rs = make_set(tmp_path)
  assert isinstance(rs.config, cli.cfg.SetRecord) and rs.config.runs == {"resnet": 5, "bert": 10}
  assert runs.RunSet(rs.path).config == rs.config  # read back from disk: the same typed value
  rs.update_config(forced=True)
  again = runs.RunSet(rs.path).config
  assert again.forced and again.launch.np == again.np == 1 and again.tasks == ("resnet", "bert")
  with open(os.path.join(rs.path, "set.json"), "w") as f:
    json.dump({"mode": "demo", "tasks": ["resnet"], "colour": "red"}, f)
  with pytest.raises(InputError, match=r"set.json: not a set description.*missing system.*unknown colour"):
    runs.RunSet(rs.path)


def test_every_run_command_goes_through_the_launch_engine(tmp_path):
  rs = make_set(tmp_path)
  rs.update_config(kernels="acme.kernels")
  argv = rs.trainer_argv("resnet", rs.run_dir("resnet", 0), 7, True)
  assert "--kernels=acme.kernels" in argv and "--seed=7" in argv and "--cache_clear=true" in argv
  cmd = flow.launch.command(flow.launch.from_args(hosts="n1:2,n2:2"), argv)
  assert cmd[:5] == ["horovodrun", "-np", "4", "-H", "n1:2,n2:2"] and cmd[-len(argv):] == argv
  assert flow.launch.command(flow.launch.from_args(np=1), argv) == argv


def test_bad_host_is_bad_input_naming_it(tmp_path):
  out = subprocess.run([os.path.join(REPO, "run_benchmark.sh"), "preflight", "--hosts=node1:8,no de:x",
                        f"--results_root={tmp_path}"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHON=sys.executable), timeout=120)
  assert out.returncode == 2 and "no de" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_digest_reads_evals_from_the_growing_log(tmp_path):
  stream = io.StringIO()
  ui = digest.Terminal(stream=stream)
  log = write_log(tmp_path / "mlperf.log", "resnet", 12, [0.5, 0.77])
  run = digest.RunDigest(ui, "resnet", 1, 5, str(log))
  run.start(42, "page cache dropped")
  run.poll()
  run.poll()  # nothing new: nothing printed twice
  run.result({"minutes": 12.0, "converged": True, "compliance": "SUCCESS"})
  lines = stream.getvalue().splitlines()
  assert lines[0] == "[resnet 2/5] seed 42; page cache dropped"
  evals = [l for l in lines if " eval at " in l]
  assert evals == ["[resnet 2/5] eval at epoch 2: 0.5000 < target 0.759, 0:04:00 since run_start",
                   "[resnet 2/5] eval at epoch 6: 0.7700 >= target 0.759, 0:08:00 since run_start"]
  assert lines[-1] == "[resnet 2/5] time to train 12.00 min, converged; compliance SUCCESS"


def test_set_progress_eta_comes_from_measured_run_times():
  stream = io.StringIO()
  p = digest.SetProgress(digest.Terminal(stream=stream), {"resnet": 2, "bert": 3})
  assert "ETA after the first measured run" in p.line()
  p.run_done("resnet", 100.0)
  assert p.eta_s() == pytest.approx(100 + 3 * 100)  # BERT not measured yet: the mean of what was
  p.run_done("bert", 40.0)
  assert p.eta_s() == pytest.approx(100 + 2 * 40)
  assert stream.getvalue().splitlines()[-1].startswith("[set] 2/5 runs done, elapsed 0:00:0")
  assert "runs/s" not in stream.getvalue()


def test_verbose_streams_the_console_and_the_digest_does_not():
  quiet, loud = io.StringIO(), io.StringIO()
  digest.Terminal(stream=quiet).console(b":::MLLOG {}\n")
  digest.Terminal(verbose=True, stream=loud).console(b":::MLLOG {}\n")
  assert quiet.getvalue() == "" and loud.getvalue() == ":::MLLOG {}\n"


def test_resume_kills_a_trainer_left_running_and_keeps_its_attempt(tmp_path):
  rs = make_set(tmp_path)
  d = rs.run_dir("resnet", 0)
  os.makedirs(d)
  # A trainer the previous driver started in its own session before dying by SIGKILL (no run_stop yet).
  orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # tf_gp2bm.train stand-in"],
                            start_new_session=True)
  deadline = time.monotonic() + 30
  while b"tf_gp2bm" not in open(f"/proc/{orphan.pid}/cmdline", "rb").read():  # until the child has exec'd
    assert time.monotonic() < deadline, "the stand-in trainer did not start"
    time.sleep(0.05)
  write_json_atomic(os.path.join(d, "driver.json"), {"task": "resnet", "index": 0, "seed": 9, "finished": False,
                                                     "pgid": orphan.pid})
  stream = io.StringIO()
  assert rs.recover("resnet", 0, digest.Terminal(stream=stream)) is None
  assert orphan.wait(timeout=30) == -signal.SIGKILL
  assert "killed the trainer left running" in stream.getvalue()
  assert not os.path.exists(d) and rs.driver_record(d + ".attempt-1")["seed"] == 9


@pytest.mark.slow
def test_scoring_reads_the_shared_real_smoke_run(resnet_smoke_run):
  """Scoring on the trainer's own output (the session's one ResNet smoke run), as the driver scores a set's run."""
  result = scoring.parse_run(resnet_smoke_run.out / "mlperf.log", "resnet")
  assert result.converged and result.reason == "" and result.parse_errors == 0, result
  assert result.seeds == [1234] and result.stop_status == "success" and result.global_batch_size == 64
  assert result.minutes > 0
  assert [tuple(e) for e in result.evals] == [(e["metadata"]["epoch_num"], e["value"])
                                               for e in resnet_smoke_run.events if e["key"] == "eval_accuracy"]
