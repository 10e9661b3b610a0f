"""MLPerf logging through mlperf_logging.mllog: rank 0 only, one fresh file per run.

mllog.config() appends to an existing file, and a reused file duplicates EXACTLY_ONE keys and fails the
checker, so we refuse to log into a file that already exists (a finished run is never overwritten).
"""
import logging
import os

from mlperf_logging import mllog
from mlperf_logging.mllog import constants

from tf_gp2bm.errors import InputError
from tf_gp2bm.files import repo_root

LOG_NAME = "mlperf.log"
# Relative file names in the metadata keep the seed checker's (file, line) keys stable across machines.


def check_new_log(path):
  """Raises InputError when `path` already holds an MLPerf log: a finished run is never overwritten."""
  if os.path.exists(path):
    raise InputError(f"{path}: an MLPerf log already exists here; choose a new --output_dir "
                     "(finished runs are never overwritten)")


class MLPerfLogger:
  """Thin wrapper: `event/start/end` write on the chief only; other ranks are silent."""

  def __init__(self, path, enabled):
    self.enabled = enabled
    self.path = path
    self._ml = None
    self.run_started = self.run_stopped = False
    if not enabled:
      return
    check_new_log(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # stack offset 2: the file/lineno metadata names the caller of event(), not this wrapper.
    mllog.config(filename=path, default_stack_offset=2, root_dir=repo_root())
    self._ml = mllog.get_mllogger()
    # mllog also prints every line to the console through its logger's handlers; keep that (it is the
    # progress a user watches) but stop duplicates from propagating to absl's root handler.
    self._ml.logger.propagate = False

  def event(self, key, value=None, metadata=None):
    if self._ml:
      self._ml.event(key=key, value=value, metadata=metadata)

  def start(self, key, value=None, metadata=None):
    if self._ml:
      if key == constants.RUN_START:
        self.run_started = True
      self._ml.start(key=key, value=value, metadata=metadata)

  def end(self, key, value=None, metadata=None):
    if self._ml:
      if key == constants.RUN_STOP:
        self.run_stopped = True
      self._ml.end(key=key, value=value, metadata=metadata)

  def close(self):
    if self._ml:
      for h in list(self._ml.logger.handlers):
        if isinstance(h, logging.FileHandler):
          h.close()
          self._ml.logger.removeHandler(h)
