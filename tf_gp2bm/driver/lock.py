"""One writer per folder: an flock on <folder>/.gp2bm.lock, held for the writer's whole life (the driver's results
folder; the data tools' output folders).

The kernel drops an flock when its process dies, however it dies, so a lock file left by a dead driver never
blocks; the file's text (pid, command, start time) only names the holder in the refusal message.
"""
import datetime
import fcntl
import os
import sys

from tf_gp2bm.errors import InputError

LOCK_NAME = ".gp2bm.lock"


class LockHeld(RuntimeError):
  """Another live process holds the results folder."""


class ResultsLock:
  def __init__(self, folder, command="run_benchmark.sh", who="driver", what="the results folder",
               hint="or use another --results_root"):
    self.command, self.who, self.what, self.hint = command, who, what, hint
    self.folder = os.path.abspath(folder)
    self.path = os.path.join(self.folder, LOCK_NAME)
    self._fd = None

  def acquire(self):
    try:
      os.makedirs(self.folder, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # a read-only or full file system, or no permission: nothing can be written there
      raise InputError(f"{self.what} {self.folder}: cannot create its lock file {self.path} "
                       f"({e.strerror or e}); expected a writable folder, {self.hint}") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "a process that wrote no details"
      os.close(fd)
      raise LockHeld(f"{self.what} {self.folder} is in use by another {self.who}: {holder}. Wait for it to "
                     f"finish, or stop it (its pid is the first field), {self.hint}") from None
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"pid {os.getpid()} ({self.command} {' '.join(sys.argv[1:])}), since {started}\n".encode()
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, text, 0)
    except OSError:  # a full disk: the flock holds all the same, only the holder's details go unwritten
      pass
    self._fd = fd
    return self

  def release(self):
    if self._fd is not None:
      os.close(self._fd)  # closing the descriptor drops the flock; the file stays for the next driver
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
