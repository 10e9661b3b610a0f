"""Progress lines with rate and ETA for long work (conversion, training, benchmark sets).

One class used everywhere so every long job prints the same, greppable line:
    [convert train] 12,800/1,281,167 images  1,532.1 images/s  ETA 0:13:44
"""
import sys
import time


def format_seconds(seconds):
  seconds = max(0, int(seconds))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
  """Counts units of work and prints at most every `every_s` seconds (and at the end)."""

  def __init__(self, label, total=None, unit="items", every_s=5.0, stream=None):
    self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
    self.stream = stream or sys.stderr
    self.done = 0
    self.start = time.monotonic()
    self._last = 0.0

  @property
  def rate(self):
    elapsed = time.monotonic() - self.start
    return self.done / elapsed if elapsed > 0 else 0.0

  def line(self):
    rate = self.rate
    if self.total:
      eta = (self.total - self.done) / rate if rate > 0 else float("inf")
      eta_s = format_seconds(eta) if eta != float("inf") else "?"
      return (f"[{self.label}] {self.done:,}/{self.total:,} {self.unit}  "
              f"{rate:,.1f} {self.unit}/s  ETA {eta_s}")
    return f"[{self.label}] {self.done:,} {self.unit}  {rate:,.1f} {self.unit}/s"

  def update(self, n=1):
    self.done += n
    now = time.monotonic()
    if now - self._last >= self.every_s:
      self._last = now
      print(self.line(), file=self.stream, flush=True)

  def finish(self):
    elapsed = time.monotonic() - self.start
    print(f"{self.line()}  done in {format_seconds(elapsed)}", file=self.stream, flush=True)
