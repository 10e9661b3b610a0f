"""Chaos: a demo set of a few short runs while a seeded schedule sends SIGKILL or SIGINT to the trainer or to the
driver at random points, then resumes the driver until the set is done.

Whatever the schedule, the set must end as if nothing happened, plus the attempts: exactly the requested runs,
each finished with a compliant log, every seed drawn once (attempts included), and every interrupted attempt kept
and listed in summary.json. Each schedule is one test (slow tier); the data is the session's tiny demo set.
"""
import glob
import json
import os
import random
import signal
import time

import pytest

from tf_gp2bm.driver import runs

from test_faults_driver import demo_set_argv, driver, start_driver

RUNS = 3
SCHEDULES = [4, 6, 21]  # seeds of random.Random; together they hit every run with each signal at each target
HITS = 3                  # interruptions per schedule


def draw_schedule(seed):
  """[(run, target, signal, seconds after its trainer starts)], runs in launch order: which run each interruption
  hits, where, how and when."""
  rng = random.Random(seed)
  at = sorted(rng.randrange(RUNS) for _ in range(HITS))
  return [(run, rng.choice(["trainer", "driver"]), rng.choice([signal.SIGKILL, signal.SIGINT]), rng.uniform(0, 12))
          for run in at]


def parent_pid(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return int(f.read().rsplit(")", 1)[1].split()[1])
  except (OSError, IndexError, ValueError):
    return None  # gone


def running_trainer(results, driver_pid, run=0):
  """(run folder, process group) of a trainer this driver started and has not yet recorded, or None (a trainer a
  killed driver left running does not count: the next driver kills it on its turn)."""
  for path in glob.glob(os.path.join(results, "*-demo", "runs", "resnet", "run_*", runs.DRIVER_JSON)):
    if runs.ATTEMPT in path or int(os.path.basename(os.path.dirname(path)).split("_")[1]) < run:
      continue
    try:
      rec = json.load(open(path))
    except (OSError, ValueError):  # being replaced this very moment
      continue
    if rec.get("pgid") and not rec.get("finished") and not rec.get("stopped") and \
        parent_pid(rec["pgid"]) == driver_pid:
      return os.path.dirname(path), rec["pgid"]
  return None


def wait_for_trainer(results, proc, run, timeout=900):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    found = running_trainer(results, proc.pid, run)
    if found:
      return found
    if proc.poll() is not None:
      return None  # the driver finished (or stopped) before another trainer started
    time.sleep(0.2)
  proc.kill()
  pytest.fail(f"no trainer started within {timeout}s")


@pytest.fixture
def drivers():
  """Starts drivers; any still running when the test ends (it failed) is stopped with its trainer (SIGTERM)."""
  started = []

  def start(argv):
    started.append(start_driver(argv))
    return started[-1]
  yield start
  for proc in started:
    if proc.poll() is None:
      proc.terminate()
      proc.communicate(timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_interrupted_set_ends_with_exactly_the_requested_runs(demo_imagenet, tmp_path, schedule, drivers):
  argv = demo_set_argv(tmp_path, demo_imagenet, runs=RUNS)
  results = str(tmp_path / "results")
  happened = []
  proc = drivers(argv)
  for run, target, sig, delay in draw_schedule(schedule):
    found = wait_for_trainer(results, proc, run)
    if not found:  # the driver ended before that run: resume it and go on with the schedule
      proc.communicate()
      proc = drivers(argv)
      found = wait_for_trainer(results, proc, run)
      if not found:
        break
    time.sleep(delay)
    if target == "trainer":
      try:
        os.killpg(found[1], sig)
      except ProcessLookupError:
        continue  # it ended on its own meanwhile
    else:
      proc.send_signal(sig)
      proc.communicate(timeout=300)
      proc = drivers(argv)  # the resume
    happened.append((target, sig.name, os.path.basename(found[0])))
  proc.communicate(timeout=1800)
  for _ in range(3):  # resume until done (a driver stopped by a repeated trainer kill says to rerun)
    if proc.returncode == 0:
      break
    proc = drivers(argv)
    proc.communicate(timeout=1800)
  assert proc.returncode == 0, f"schedule {schedule}: {happened}"
  final = driver(*argv)  # once more: a complete set is left as it is
  assert final.returncode == 0 and "is complete" in final.stdout, final.stdout[-2000:] + final.stderr[-2000:]

  (set_dir,) = glob.glob(os.path.join(results, "*-demo"))
  run_root = os.path.join(set_dir, "runs", "resnet")
  names = sorted(os.listdir(run_root))
  assert [n for n in names if runs.ATTEMPT not in n] == [f"run_{i}" for i in range(RUNS)], names
  summary = json.load(open(os.path.join(set_dir, "summary.json")))
  rows = summary["tasks"]["resnet"]["runs"]
  assert len(rows) == RUNS
  seeds = []
  for i, row in enumerate(rows):
    rec = runs.RunSet.driver_record(os.path.join(run_root, f"run_{i}"))
    assert rec["finished"] and rec["exit_code"] in (0, 3) and rec["compliance_passed"], (schedule, happened, rec)
    assert row["seeds_logged"] == [rec["seed"]]  # the log holds the seed the driver drew for it
    seeds.append(rec["seed"])
    attempts = sorted(n for n in names if n.startswith(f"run_{i}{runs.ATTEMPT}"))
    assert [a["folder"] for a in row["attempts"]] == [f"runs/resnet/{a}" for a in attempts], (row, names)
    for a in row["attempts"]:
      seeds.append(a["seed"])
  assert len(seeds) == len(set(seeds)), f"a seed drawn twice: {seeds}"
  print(f"schedule {schedule}: hits {happened}; attempts kept: {[a for a in names if runs.ATTEMPT in a]}")
  # Every hit on a running trainer, or on the driver while its trainer ran, left one attempt (a trainer that
  # finished before the kill landed is recorded instead, so there may be fewer).
  assert sum(len(r["attempts"]) for r in rows) <= len(happened), (happened, names)
