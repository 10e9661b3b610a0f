"""One benchmark set on disk: its folder, its runs, resume, seeds, cache drop and the hang watchdog.

Layout of a set folder (results/<UTC time>-<mode>/):
  set.json                      what was asked (tasks, run counts, flagfiles, data, org/system): resume checks it
  flags/<task>.flags            the flagfile snapshot every run of the set uses (edits later do not leak in)
  runs/<task>/run_<i>/          mlperf.log (written by the trainer), console.log, run.json (trainer), driver.json
  runs/<task>/run_<i>.attempt-N an interrupted attempt, moved aside on resume; nothing is deleted
A run is finished when its driver.json says so; anything else found on resume is an interrupted attempt.
"""
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tf_gp2bm.files import read_json, write_json_atomic

from . import checks, scoring

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_BITS = 31  # int32-safe seeds: TF, numpy and the seed checker's int() all take them
# The mllog submission_status values of ruleset 4.0.0, from the system description's status.
MLLOG_STATUS = {"Available on-premise": "onprem", "Available cloud": "cloud",
                "Research, Development, or Internal (RDI)": "research", "Preview": "preview"}


def utc_now():
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def drop_page_cache():
  """Drops the page cache as the rules ask before each run; (worked, detail). Fails without root or in a
  container whose /proc/sys is read-only, and says so instead of pretending."""
  os.sync()
  try:
    with open("/proc/sys/vm/drop_caches", "w") as f:
      f.write("3\n")
  except OSError as e:
    return False, f"cannot drop the page cache ({e.strerror or e}: /proc/sys/vm/drop_caches); logged cache_clear=false"
  return True, "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches)"


class RunSet:
  """A set folder; `config` is set.json."""

  def __init__(self, path):
    self.path = os.path.abspath(path)
    self.config = read_json(os.path.join(self.path, "set.json"), "set description")

  @classmethod
  def create(cls, root, config):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(root, f"{stamp}-{config['mode']}")
    os.makedirs(os.path.join(path, "flags"))  # fails if it exists: never reuse a folder
    for task, src in config["flagfiles"].items():
      shutil.copyfile(src, os.path.join(path, "flags", f"{task}.flags"))
    write_json_atomic(os.path.join(path, "set.json"), dict(config, created=utc_now()))
    return cls(path)

  @staticmethod
  def latest(root, mode):
    """The newest set folder of this mode under root, or None."""
    if not os.path.isdir(root):
      return None
    names = sorted(n for n in os.listdir(root) if n.endswith(f"-{mode}")
                   and os.path.exists(os.path.join(root, n, "set.json")))
    return os.path.join(root, names[-1]) if names else None

  # --- paths -------------------------------------------------------------------------------------------------
  def flagfile(self, task):
    return os.path.join(self.path, "flags", f"{task}.flags")

  def run_dir(self, task, i):
    return os.path.join(self.path, "runs", task, f"run_{i}")

  def run_dirs(self, task):
    return [self.run_dir(task, i) for i in range(self.config["runs"][task])]

  @staticmethod
  def driver_record(run_dir):
    p = os.path.join(run_dir, "driver.json")
    return read_json(p, "run record") if os.path.exists(p) else None

  def is_finished(self, run_dir):
    rec = self.driver_record(run_dir)
    return bool(rec and rec.get("finished"))

  def is_complete(self):
    return all(self.is_finished(d) for t in self.config["tasks"] for d in self.run_dirs(t))

  def used_seeds(self):
    """Every seed handed out in this set, attempts included, so a redo never repeats one."""
    seeds = set()
    runs_root = os.path.join(self.path, "runs")
    for dirpath, _, files in os.walk(runs_root):
      if "driver.json" in files:
        seeds.add(read_json(os.path.join(dirpath, "driver.json"))["seed"])
    return seeds

  def new_seed(self):
    used = self.used_seeds()
    while True:
      seed = int.from_bytes(os.urandom(4), "little") & ((1 << SEED_BITS) - 1)
      if seed not in used:
        return seed

  def move_aside(self, run_dir):
    """Keeps an interrupted attempt as <run_dir>.attempt-N (first free N)."""
    n = 1
    while os.path.exists(f"{run_dir}.attempt-{n}"):
      n += 1
    os.rename(run_dir, f"{run_dir}.attempt-{n}")
    return f"{run_dir}.attempt-{n}"

  # --- running -----------------------------------------------------------------------------------------------
  def command(self, task, run_dir, seed, cache_clear):
    c = self.config
    data = c["data"][task]
    cmd = [sys.executable, "-m", "tf_gp2bm.train", f"--task={task}", f"--flagfile={self.flagfile(task)}",
           f"--output_dir={run_dir}", f"--seed={seed}",
           f"--cache_clear={'true' if cache_clear else 'false'}",
           f"--submission_org={c['org']}", f"--submission_platform={c['system_name']}",
           f"--submission_status={MLLOG_STATUS[c['status']]}"]
    # A path not given (only possible with --force past the preflight) is left to the trainer to reject.
    cmd += [f"--{k}={v}" for k, v in data.items() if v]
    if c.get("np", 1) > 1:
      cmd = ["horovodrun", "-np", str(c["np"])] + cmd
    return cmd

  def run_one(self, task, i, log=print):
    """Runs (or skips, or redoes) run i of task; returns its driver record."""
    run_dir = self.run_dir(task, i)
    if self.is_finished(run_dir):
      return self.driver_record(run_dir)
    if os.path.exists(run_dir):
      log(f"[{task} run {i}] unfinished attempt found, kept as {self.move_aside(run_dir)}")
    os.makedirs(run_dir)
    seed = self.new_seed()
    cache_ok, cache_detail = drop_page_cache()
    cmd = self.command(task, run_dir, seed, cache_ok)
    rec = {"task": task, "index": i, "seed": seed, "command": cmd, "cache_clear": cache_ok,
           "cache_detail": cache_detail, "started": utc_now(), "finished": False}
    write_json_atomic(os.path.join(run_dir, "driver.json"), rec)
    log(f"[{task} run {i}] seed {seed}; {cache_detail}")
    exit_code, hang = launch(cmd, run_dir, self.config["watchdog_minutes"] * 60, log,
                             xla_cache=os.path.join(self.path, "xla_cache"))
    rec.update(exit_code=exit_code, watchdog_killed=hang, ended=utc_now())
    run_json = os.path.join(run_dir, "run.json")
    rec["trainer"] = read_json(run_json, "trainer run record") if os.path.exists(run_json) else None
    mllog_path = os.path.join(run_dir, "mlperf.log")
    result = scoring.parse_run(mllog_path, task, self.config["ruleset"])
    verdict = (checks.compliance_check(mllog_path, self.config["ruleset"], os.path.join(run_dir, "compliance.log"))
               if os.path.exists(mllog_path) else checks.Verdict(False, "FAILED: no mlperf.log"))
    with open(os.path.join(run_dir, "compliance.txt"), "w") as f:
      f.write(verdict.output)
    rec.update(converged=result.converged, minutes=result.minutes, reason=result.reason,
               compliance=verdict.summary, compliance_passed=verdict.passed, finished=True)
    if hang:
      rec["reason"] = (f"watchdog: no log progress for {self.config['watchdog_minutes']} min, killed; "
                       + (result.reason or ""))
    write_json_atomic(os.path.join(run_dir, "driver.json"), rec)
    status = "converged" if result.converged else f"NOT converged ({rec['reason']})"
    minutes = f"{result.minutes:.2f} min" if result.minutes is not None else "no time"
    log(f"[{task} run {i}] exit {exit_code}, {minutes}, {status}; compliance {verdict.summary[:120]}")
    return rec

  def results(self, task):
    """RunResults of the finished runs, in launch order."""
    return [scoring.parse_run(os.path.join(d, "mlperf.log"), task, self.config["ruleset"])
            for d in self.run_dirs(task) if self.is_finished(d)]


def launch(cmd, run_dir, watchdog_s, log=print, xla_cache=None):
  """Runs cmd in its own process group with output teed to run_dir/console.log and the terminal.

  The watchdog kills the group when neither mlperf.log nor the console has grown for watchdog_s seconds (a hung
  collective or a dead data loader never exits on its own). Returns (exit_code, killed_by_watchdog).

  xla_cache: a persistent XLA compilation cache shared by the set's runs, so later runs skip compiling in their
  untimed init (the timed region is unchanged; the cache holds compiled programs, never data).
  """
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
  if xla_cache:
    env["TF_XLA_FLAGS"] = f"{env.get('TF_XLA_FLAGS', '')} --tf_xla_persistent_cache_directory={xla_cache}".strip()
  console_path = os.path.join(run_dir, "console.log")
  mllog_path = os.path.join(run_dir, "mlperf.log")
  last_output = [time.monotonic()]
  with open(console_path, "ab") as console:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def tee():
      for line in iter(proc.stdout.readline, b""):
        console.write(line)
        console.flush()
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
        last_output[0] = time.monotonic()

    reader = threading.Thread(target=tee, daemon=True)
    reader.start()
    hang = False
    try:
      last_size = -1
      while proc.poll() is None:
        time.sleep(1.0)
        size = os.path.getsize(mllog_path) if os.path.exists(mllog_path) else 0
        if size != last_size:
          last_size, last_output[0] = size, max(last_output[0], time.monotonic())
        if time.monotonic() - last_output[0] > watchdog_s:
          log(f"watchdog: no progress in {watchdog_s / 60:.1f} min, killing process group {proc.pid}")
          hang = True
          _kill_group(proc)
    except BaseException:
      _kill_group(proc)  # Ctrl-C / SIGTERM of the driver must not leave a trainer holding the GPUs
      raise
    reader.join(timeout=10)
  return proc.returncode, hang


def _kill_group(proc, grace_s=30):
  for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      return
    try:
      proc.wait(timeout=grace_s)
      return
    except subprocess.TimeoutExpired:
      continue
