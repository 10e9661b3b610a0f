"""What a person sees while a set runs: one start line, one line per eval and one result line per run, and
the set's progress (runs done, elapsed, ETA from the measured run times).

The eval lines come from the run's own mlperf.log (rank 0 writes it), read as it grows, so the digest shows
exactly what the checker and the score will see; the run's full console stays in its console.log.
"""
import json
import sys
import time

from tf_gp2bm.progress import format_seconds
from tf_gp2bm.tasks import spec as task_spec

from .scoring import CONVERGED

MLLOG_PREFIX = ":::MLLOG "


class MllogTail:
  """Reads complete new lines of a growing mlperf.log; yields the parsed events."""

  def __init__(self, path):
    self.path, self.offset, self.partial = path, 0, b""

  def events(self):
    try:
      with open(self.path, "rb") as f:
        f.seek(self.offset)
        data = f.read()
    except FileNotFoundError:
      return []
    self.offset += len(data)
    lines = (self.partial + data).split(b"\n")
    self.partial = lines.pop()
    out = []
    for line in lines:
      text = line.decode(errors="replace")
      if MLLOG_PREFIX in text:
        try:
          out.append(json.loads(text.split(MLLOG_PREFIX, 1)[1]))
        except json.JSONDecodeError:
          continue  # a garbled line is the checker's business, not the digest's
    return out


def format_progress(spec, value):
  if value is None:
    return "?"
  if spec.progress_unit == "epochs":
    return f"epoch {value:g}"
  return f"{int(value):,} samples"


class RunDigest:
  """The lines of one run."""

  def __init__(self, ui, task, index, total, mllog_path):
    self.ui, self.spec = ui, task_spec.get(task)
    self.label = f"[{task} {index + 1}/{total}]"
    self.tail = MllogTail(mllog_path)
    self.run_start_ms = None

  def start(self, seed, detail):
    self.ui.say(f"{self.label} seed {seed}; {detail}")

  def poll(self):
    for ev in self.tail.events():
      key, t = ev.get("key"), ev.get("time_ms")
      if key == "run_start":
        self.run_start_ms = t
        self.ui.say(f"{self.label} run_start (the clock runs)")
      elif key == "eval_accuracy":
        meta = ev.get("metadata") or {}
        elapsed = (t - self.run_start_ms) / 1000 if self.run_start_ms is not None and t else None
        acc = ev.get("value")
        mark = ">=" if isinstance(acc, (int, float)) and acc >= self.spec.target_accuracy else "<"
        acc_s = f"{acc:.4f}" if isinstance(acc, (int, float)) else repr(acc)
        self.ui.say(f"{self.label} eval at {format_progress(self.spec, meta.get('epoch_num'))}: {acc_s} {mark} "
                    f"target {self.spec.target_accuracy}"
                    + (f", {format_seconds(elapsed)} since run_start" if elapsed is not None else ""))

  def result(self, rec):
    minutes = rec.get("minutes")
    time_s = f"{minutes:.2f} min" if minutes is not None else "no time logged"
    state = CONVERGED if rec.get("converged") else f"NOT converged ({rec.get('reason') or 'see console.log'})"
    self.ui.say(f"{self.label} time to train {time_s}, {state}; compliance {rec.get('compliance', '-')[:100]}")
    for line in rec.get("error_lines") or []:
      self.ui.say(f"{self.label}   {line}")


class SetProgress:
  """runs done/total, elapsed and an ETA from the wall time of the runs measured in this session."""

  def __init__(self, ui, remaining):
    self.ui = ui
    self.remaining = dict(remaining)  # task -> runs still to do
    self.done = 0
    self.total = sum(self.remaining.values())
    self.start = time.monotonic()
    self.measured = {}  # task -> [wall seconds]

  def run_done(self, task, wall_s):
    self.done += 1
    self.remaining[task] -= 1
    if wall_s is not None:
      self.measured.setdefault(task, []).append(wall_s)
    self.ui.say(self.line())

  def eta_s(self):
    every = [s for v in self.measured.values() for s in v]
    if not every:
      return None
    overall = sum(every) / len(every)
    return sum(n * (sum(self.measured[t]) / len(self.measured[t]) if self.measured.get(t) else overall)
               for t, n in self.remaining.items())

  def line(self):
    eta = self.eta_s()
    return (f"[set] {self.done}/{self.total} runs done, elapsed {format_seconds(time.monotonic() - self.start)}, "
            f"ETA {format_seconds(eta) if eta is not None else 'after the first measured run'}")


class Terminal:
  """The driver's own lines (always) and, with --verbose, every run's console as it comes."""

  def __init__(self, verbose=False, stream=None):
    self.verbose = verbose
    self.stream = stream or sys.stdout

  def say(self, text):
    print(text, file=self.stream, flush=True)

  def console(self, raw_line):
    if self.verbose:
      self.stream.write(raw_line.decode(errors="replace"))
      self.stream.flush()
