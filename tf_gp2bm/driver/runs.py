"""One benchmark set on disk: its folder, its runs, resume, seeds, cache drop and the hang watchdog.

Layout of a set folder (results/<UTC time>-<mode>/):
  set.json                      what was asked (tasks, run counts, flagfiles, data, org/system): resume checks it
  flags/<task>.flags            the flagfile snapshot every run of the set uses (edits later do not leak in)
  runs/<task>/run_<i>/          mlperf.log (written by the trainer), console.log, run.json (trainer), driver.json
  runs/<task>/run_<i>.attempt-N an interrupted attempt, moved aside on resume; nothing is deleted
A run is finished when its driver.json says so. On resume, a run whose log already holds run_stop (the driver
died after the trainer finished) is recorded from its files, never redone; anything else is moved aside. A run the
driver stopped (Ctrl-C, SIGTERM or SIGHUP to it) or that a signal ended is an attempt whatever its log's last line
says: its driver.json says `stopped` before the trainer is told to stop, and it is moved aside and redone.
"""
import dataclasses
import datetime
import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tf_gp2bm.errors import EXIT_BAD_INPUT
from tf_gp2bm.files import read_json, repo_root, sha256_file, write_json_atomic

from . import checks, digest, scoring
from .config import SetRecord
from .launch import tool_env
from .service import service_tasks
from .system_desc import MLLOG_STATUS

SEED_BITS = 31  # int32-safe seeds: TF, numpy and the seed checker's int() all take them
MLLOG, CONSOLE, RUN_JSON, DRIVER_JSON = "mlperf.log", "console.log", "run.json", "driver.json"
ATTEMPT = ".attempt-"
REDOS_PER_RUN = 3  # tries per run and driver session while signals keep ending its trainer; then the set stops


class RunInterrupted(RuntimeError):
  """A trainer was ended by a signal from outside the driver once too often: the set stops (rerun to continue)."""


def utc_now():
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunSet:
  """A set folder; `config` is its set.json as a typed SetRecord."""

  def __init__(self, path):
    self.path = os.path.abspath(path)
    set_json = os.path.join(self.path, "set.json")
    self.config = SetRecord.from_record(read_json(set_json, "set description"), set_json)

  @classmethod
  def create(cls, root, record):
    """A new set folder for record (a SetRecord)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(root, f"{stamp}-{record.mode}")
    os.makedirs(os.path.join(path, "flags"))  # fails if it exists: never reuse a folder
    for task, src in record.flagfiles.items():
      shutil.copyfile(src, os.path.join(path, "flags", f"{task}.flags"))
    write_json_atomic(os.path.join(path, "set.json"), dataclasses.replace(record, created=utc_now()).to_record())
    return cls(path)

  def update_config(self, **changes):
    """Rewrites set.json with changes (e.g. forced=True when a resume is forced past failed checks)."""
    self.config = dataclasses.replace(self.config, **changes)
    write_json_atomic(os.path.join(self.path, "set.json"), self.config.to_record())

  @staticmethod
  def latest(root, mode):
    """The newest set folder of this mode under root, or None."""
    if not os.path.isdir(root):
      return None
    names = sorted(n for n in os.listdir(root) if n.endswith(f"-{mode}")
                   and os.path.exists(os.path.join(root, n, "set.json")))
    return os.path.join(root, names[-1]) if names else None

  def rel(self, path):
    """A path as the reports show it: relative to the set folder."""
    return os.path.relpath(path, self.path) if path else path

  # --- paths -------------------------------------------------------------------------------------------------
  def flagfile(self, task):
    return os.path.join(self.path, "flags", f"{task}.flags")

  def run_dir(self, task, i):
    return os.path.join(self.path, "runs", task, f"run_{i}")

  def run_dirs(self, task):
    return [self.run_dir(task, i) for i in range(self.config.runs[task])]

  def attempts(self, task, i):
    """Earlier attempts of run i, oldest first: [(folder, driver record or None)]."""
    found = glob.glob(glob.escape(self.run_dir(task, i)) + ATTEMPT + "*")
    found.sort(key=lambda p: int(p.rsplit(ATTEMPT, 1)[1]) if p.rsplit(ATTEMPT, 1)[1].isdigit() else 0)
    return [(p, self.driver_record(p)) for p in found]

  @staticmethod
  def driver_record(run_dir):
    p = os.path.join(run_dir, DRIVER_JSON)
    return read_json(p, "run record") if os.path.exists(p) else None

  def is_finished(self, run_dir):
    rec = self.driver_record(run_dir)
    return bool(rec and rec.get("finished"))

  def is_complete(self):
    return all(self.is_finished(d) for t in self.config.tasks for d in self.run_dirs(t))

  def used_seeds(self):
    """Every seed handed out in this set, attempts included, so a redo never repeats one."""
    seeds = set()
    for dirpath, _, files in os.walk(os.path.join(self.path, "runs")):
      if DRIVER_JSON in files:
        seeds.add(read_json(os.path.join(dirpath, DRIVER_JSON))["seed"])
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
    while os.path.exists(f"{run_dir}{ATTEMPT}{n}"):
      n += 1
    os.rename(run_dir, f"{run_dir}{ATTEMPT}{n}")
    return f"{run_dir}{ATTEMPT}{n}"

  # --- running -----------------------------------------------------------------------------------------------
  def trainer_argv(self, task, run_dir, seed, cache_clear):
    c = self.config
    argv = [sys.executable, "-m", "tf_gp2bm.train", f"--task={task}", f"--flagfile={self.flagfile(task)}",
            f"--output_dir={run_dir}", f"--seed={seed}", f"--cache_clear={'true' if cache_clear else 'false'}",
            f"--submission_org={c.org}", f"--submission_platform={c.system_name}",
            f"--submission_status={MLLOG_STATUS[c.status]}"]
    if c.kernels:
      argv.append(f"--kernels={c.kernels}")
    if self.data_service_address(task):
      argv.append(f"--data_service={self.data_service_address(task)}")
    # A path not given (only possible with --force past the preflight) is left to the trainer to reject.
    return argv + [f"--{k}={v}" for k, v in c.data[task].items() if v]

  def data_service_address(self, task):
    """The dispatcher the task's runs read their train input from, or None (no service, or a task without it)."""
    c = self.config.data_service
    return c.address if c and service_tasks((task,)) else None

  def recover(self, task, i, ui):
    """Resume bookkeeping for run i: a log with run_stop is recorded as it is; any other leftover is moved
    aside. Returns the finished record, or None when the run must be (re)started."""
    run_dir = self.run_dir(task, i)
    rec = self.driver_record(run_dir)
    if rec and rec.get("finished"):
      return rec
    if not os.path.exists(run_dir):
      return None
    if rec and _kill_orphan(rec.get("pgid")):
      ui.say(f"[{task} {i + 1}] killed the trainer left running by the previous driver (process group "
             f"{rec['pgid']})")
    if rec and rec.get("stopped"):  # the driver stopped it: its run_stop (if any) is not a result
      ui.say(f"[{task} {i + 1}] stopped attempt ({rec['stopped']}) kept as {self.rel(self.move_aside(run_dir))}")
      return None
    if rec and scoring.has_run_stop(os.path.join(run_dir, MLLOG), task, self.config.ruleset):
      ui.say(f"[{task} {i + 1}] the trainer finished before the previous driver stopped: recorded from its files")
      rec.update(recovered=True, ended=rec.get("ended") or utc_now())
      return self.finish_record(task, run_dir, rec, launcher_exit=None, hang=False)
    ui.say(f"[{task} {i + 1}] unfinished attempt kept as {self.rel(self.move_aside(run_dir))}")
    return None

  def record_finished_runs(self, ui):
    """Records every unrecorded run whose log is closed (before any preflight: nothing new needs to start for
    them); other leftovers are dealt with when their turn comes."""
    for task in self.config.tasks:
      for i, d in enumerate(self.run_dirs(task)):
        rec = self.driver_record(d)
        if not rec or rec.get("finished") or rec.get("stopped"):
          continue  # nothing to record, recorded, or stopped by the driver (an attempt whatever its log says)
        if scoring.has_run_stop(os.path.join(d, MLLOG), task, self.config.ruleset):
          self.recover(task, i, ui)

  def run_one(self, task, i, launch_command, drop_caches, ui):
    """Runs run i of task (unless resume finds it done); returns its driver record.

    launch_command: trainer argv -> the argv that starts the run's processes; drop_caches: () -> (ok, detail).
    """
    rec = self.recover(task, i, ui)
    if rec:
      return rec
    for _ in range(REDOS_PER_RUN):
      rec = self._attempt(task, i, launch_command, drop_caches, ui)
      if not rec.get("stopped"):
        return rec
      kept = self.rel(self.move_aside(self.run_dir(task, i)))
      ui.say(f"[{task} {i + 1}] {rec['stopped']}: not a result; attempt kept as {kept}, run again with a new seed")
    raise RunInterrupted(f"[{task} {i + 1}] a signal from outside the driver ended the trainer {REDOS_PER_RUN} times "
                         "in a row (see the attempts' console.log); the set is stopped, rerun the same command to "
                         "continue it")

  def _attempt(self, task, i, launch_command, drop_caches, ui):
    """One attempt of run i: a finished record, or one marked `stopped` when a signal ended the trainer."""
    run_dir = self.run_dir(task, i)
    os.makedirs(run_dir)
    seed = self.new_seed()
    cache_ok, cache_detail = drop_caches()
    cmd = launch_command(self.trainer_argv(task, run_dir, seed, cache_ok))
    rec = {"task": task, "index": i, "seed": seed, "command": cmd, "cache_clear": cache_ok,
           "cache_detail": cache_detail, "data_service": self.data_service_address(task), "started": utc_now(),
           "finished": False}
    write_json_atomic(os.path.join(run_dir, DRIVER_JSON), rec)
    run_digest = digest.RunDigest(ui, task, i, self.config.runs[task], os.path.join(run_dir, MLLOG))
    run_digest.start(seed, cache_detail)

    def started(pgid):
      rec["pgid"] = pgid
      write_json_atomic(os.path.join(run_dir, DRIVER_JSON), rec)

    def stopping(error):
      # Written before the trainer is told to stop: whatever it logs next, and even if this driver dies during
      # the grace period, the resume knows this run is an attempt.
      write_json_atomic(os.path.join(run_dir, DRIVER_JSON), dict(rec, stopped=_stop_reason(error), ended=utc_now()))

    t0 = time.monotonic()
    code, hang = run_watched(cmd, run_dir, self.config.watchdog_minutes * 60, ui,
                             xla_cache=os.path.join(self.path, "xla_cache"), on_start=started, poll=run_digest.poll,
                             on_stop=stopping)
    rec.update(wall_s=round(time.monotonic() - t0, 1), ended=utc_now())
    signalled = None if hang else _ended_by_signal(code, os.path.join(run_dir, RUN_JSON))
    if signalled:
      rec.update(stopped=f"the trainer was ended by {signalled}", launcher_exit_code=code)
      rec.pop("pgid", None)
      write_json_atomic(os.path.join(run_dir, DRIVER_JSON), rec)
      return rec
    if hang:
      ui.say(f"[{task} {i + 1}] watchdog: no log progress for {self.config.watchdog_minutes:g} min, killed")
    rec = self.finish_record(task, run_dir, rec, launcher_exit=code, hang=hang)
    run_digest.result(rec)
    return rec

  def finish_record(self, task, run_dir, rec, launcher_exit, hang):
    """Completes a run's driver.json from its files. The outcome is rank 0's run.json (a launcher such as
    horovodrun turns every rank's failure into exit 1); the launcher's status is kept beside it."""
    run_json = os.path.join(run_dir, RUN_JSON)
    trainer = read_json(run_json, "trainer run record") if os.path.exists(run_json) else None
    mllog_path = os.path.join(run_dir, MLLOG)
    result = scoring.parse_run(mllog_path, task, self.config.ruleset)
    verdict = self.compliance(run_dir)
    exit_code = trainer.get("exit_code") if trainer and trainer.get("exit_code") is not None else launcher_exit
    rec.update(exit_code=exit_code, launcher_exit_code=launcher_exit, watchdog_killed=hang, trainer=trainer,
               converged=result.converged, minutes=result.minutes, reason=result.reason, division=result.division,
               compliance=verdict.summary, compliance_passed=verdict.passed, finished=True,
               log_sha256=sha256_file(mllog_path) if os.path.exists(mllog_path) else None)
    rec.pop("pgid", None)
    if hang:
      rec["reason"] = f"watchdog: no log progress for {self.config.watchdog_minutes:g} min, killed; {result.reason}"
    if exit_code not in (0, 3):
      rec["error_lines"] = error_lines(trainer, os.path.join(run_dir, CONSOLE))
    write_json_atomic(os.path.join(run_dir, DRIVER_JSON), rec)
    return rec

  def compliance(self, run_dir):
    mllog_path = os.path.join(run_dir, MLLOG)
    verdict = (checks.compliance_check(mllog_path, self.config.ruleset, os.path.join(run_dir, "compliance.log"))
               if os.path.exists(mllog_path) else checks.Verdict(False, "FAILED: no mlperf.log"))
    with open(os.path.join(run_dir, "compliance.txt"), "w") as f:
      f.write(verdict.output)
    return verdict

  def results(self, task):
    """RunResults of the finished runs, in launch order."""
    return [scoring.parse_run(os.path.join(d, MLLOG), task, self.config.ruleset)
            for d in self.run_dirs(task) if self.is_finished(d)]


def error_lines(trainer, console_path, n=3):
  """Why a run failed, for the terminal: the trainer's own reason, else the console's last error lines."""
  if trainer and trainer.get("reason"):
    return [str(trainer["reason"])[:300]]
  try:
    with open(console_path, errors="replace") as f:
      lines = [l.rstrip() for l in f if l.strip()]
  except OSError:
    return []
  errors = [l for l in lines if l.startswith(("error:", "Error", "ERROR")) or "Error:" in l]
  return [l[:300] for l in (errors or lines)[-n:]]


def _stop_reason(error):
  """What stopped the driver, as driver.json records it."""
  if isinstance(error, KeyboardInterrupt):
    return "the driver was stopped by SIGINT (Ctrl-C)"
  if isinstance(error, SystemExit) and isinstance(error.code, int) and error.code > 128:
    return f"the driver was stopped by {signal.Signals(error.code - 128).name}"
  return f"the driver stopped ({type(error).__name__}: {error})"


def _ended_by_signal(launcher_exit, run_json):
  """The signal's name when the trainer ended by one (its run.json says 128+N, or the launcher saw the signal);
  None otherwise."""
  code = None
  if os.path.exists(run_json):
    try:
      code = read_json(run_json, "trainer run record").get("exit_code")
    except (OSError, ValueError):  # an unreadable run.json: the launcher's status decides
      code = None
  for c in (code, launcher_exit):
    if isinstance(c, int) and (c < 0 or c > 128):
      try:
        return signal.Signals(-c if c < 0 else c - 128).name
      except ValueError:
        continue
  return None


def _kill_orphan(pgid):
  """Kills a trainer process group the previous driver left behind (it died by SIGKILL); True if one was."""
  if not pgid:
    return False
  try:
    with open(f"/proc/{pgid}/cmdline", "rb") as f:
      if b"tf_gp2bm" not in f.read():
        return False  # the id was reused by something else
    os.killpg(pgid, signal.SIGKILL)
  except (OSError, ProcessLookupError):
    return False
  return True


def run_watched(cmd, run_dir, watchdog_s, ui, xla_cache=None, on_start=None, poll=None, on_stop=None):
  """Runs cmd in its own process group, its output going to run_dir/console.log (and the terminal with
  --verbose). `poll` is called every second (the digest reads mlperf.log there).

  The watchdog kills the group when neither mlperf.log nor the console has grown for watchdog_s seconds (a hung
  collective or a dead data loader never exits on its own). Returns (exit_code, killed_by_watchdog).

  xla_cache: a persistent XLA compilation cache shared by the set's runs, so later runs skip compiling in their
  untimed init (the timed region is unchanged; the cache holds compiled programs, never data). TensorFlow reads
  each entry by trying the text format before the binary one it wrote, so every cache hit puts one harmless
  "Error parsing text-format tensorflow.XlaSerializedCacheEntry" line into console.log; the digest never shows it.
  """
  env = tool_env(dict(os.environ, PYTHONUNBUFFERED="1"))  # tf_gp2bm sets the Keras/log-level variables
  if xla_cache:
    env["TF_XLA_FLAGS"] = f"{env.get('TF_XLA_FLAGS', '')} --tf_xla_persistent_cache_directory={xla_cache}".strip()
  mllog_path = os.path.join(run_dir, MLLOG)
  last_output = [time.monotonic()]
  with open(os.path.join(run_dir, CONSOLE), "ab") as console:
    try:
      proc = subprocess.Popen(cmd, cwd=repo_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    except OSError as e:  # a launcher that is not installed fails every run the same way: bad input
      console.write(f"error: cannot start {cmd[0]}: {e.strerror or e} (is it installed and on PATH?)\n".encode())
      return EXIT_BAD_INPUT, False
    if on_start:
      on_start(proc.pid)

    def tee():
      writable = True
      for line in iter(proc.stdout.readline, b""):
        if writable:
          try:
            console.write(line)
            console.flush()
          except OSError as e:  # a full or read-only disk: keep draining, or the trainer blocks on its output
            writable = False
            ui.say(f"warning: cannot write {console.name}: {e.strerror or e}; the run's output is no longer kept")
        ui.console(line)
        last_output[0] = time.monotonic()

    reader = threading.Thread(target=tee, daemon=True)
    reader.start()
    hang = False
    try:
      last_size = -1
      while proc.poll() is None:
        time.sleep(1.0)
        if poll:
          poll()
        size = os.path.getsize(mllog_path) if os.path.exists(mllog_path) else 0
        if size != last_size:
          last_size, last_output[0] = size, max(last_output[0], time.monotonic())
        if time.monotonic() - last_output[0] > watchdog_s:
          hang = True
          _kill_group(proc)
    except BaseException as e:
      try:
        if on_stop:
          on_stop(e)
      finally:
        _kill_group(proc)  # Ctrl-C / SIGTERM / SIGHUP of the driver must not leave a trainer holding the GPUs
      raise
    reader.join(timeout=10)
    if poll:
      poll()
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
