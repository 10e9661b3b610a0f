"""TensorBoard for one run: scalar event files under OUTPUT_DIR/tensorboard/ and an optional profiler trace.

Written by rank 0 only, from values the trainer has already read to the host once per loop (no extra device
sync). View with `tensorboard --logdir OUTPUT_DIR/tensorboard` (or a set's runs/ folder for every run).
"""
import os

import tensorflow as tf

LOG_SUBDIR = "tensorboard"


class RunSummaries:
  """Scalars by optimizer step; `profile_steps=(A, B)` traces train steps A..B (1-based, after run_start)."""

  def __init__(self, output_dir=None, enabled=False, profile_steps=None):
    self.enabled = enabled and output_dir is not None
    self.logdir = os.path.join(output_dir, LOG_SUBDIR) if output_dir else None
    self._writer = tf.summary.create_file_writer(self.logdir) if self.enabled else None
    self.profile_steps = profile_steps if self.enabled else None
    self._profiling = False

  def scalars(self, step, values):
    """values: name -> float, e.g. {"train/loss": 2.3}; flushed at once so a killed run keeps what it wrote."""
    if not self._writer:
      return
    with self._writer.as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)
    self._writer.flush()

  # --- profiler: loops are cut at A-1 and B so the trace holds exactly steps A..B --------------------------
  def steps_to_boundary(self, step):
    """How many steps the next loop may run from `step` (steps done) without crossing a trace boundary."""
    if not self.profile_steps:
      return float("inf")
    first, last = self.profile_steps
    ahead = [b - step for b in (first - 1, last) if b > step]
    return min(ahead) if ahead else float("inf")

  def before_loop(self, step):
    if self.profile_steps and not self._profiling and step == self.profile_steps[0] - 1:
      tf.profiler.experimental.start(self.logdir)
      self._profiling = True

  def after_loop(self, step):
    if self._profiling and step >= self.profile_steps[1]:
      self._stop_profiler()

  def _stop_profiler(self):
    tf.profiler.experimental.stop()
    self._profiling = False

  def close(self):
    if self._profiling:
      self._stop_profiler()
    if self._writer:
      self._writer.close()
      self._writer = None
