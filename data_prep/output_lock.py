"""One writer per output folder: every data tool holds the driver's folder lock (tf_gp2bm.driver.lock) on its --out
for its whole run, so a second run into the same folder is refused, naming the folder and the holder, instead of
mixing its files with the first one's. Take it after the checks that --out is apart from the inputs: acquiring it
creates the folder and its lock file."""
import contextlib
import os

from tf_gp2bm.driver.lock import LockHeld, ResultsLock
from tf_gp2bm.errors import InputError

_held = set()  # real paths of the folders this process holds (a stage inside another takes its folder once)


def hold(out, command, error=InputError, flag="--out"):
  """Takes the lock of the folder `out` (created if needed) for `command` (e.g. "python -m data_prep.wikipedia
  pack"); returns it, to be released. A lock held by another live process, or by another open of it in this one,
  is `error` naming `flag`, the folder and the holder."""
  try:
    return ResultsLock(out, command=command, who=f"`{command.rsplit(' ', 1)[-1]}`", what="the output folder",
                       hint=f"or use another {flag}").acquire()
  except LockHeld as e:
    raise error(f"{flag}={out}: {e}") from None


@contextlib.contextmanager
def holding(out, command, error=InputError, flag="--out"):
  """hold() for a block; a folder this process already holds (an outer stage's) is not taken again."""
  key = os.path.realpath(out)
  if key in _held:
    yield
    return
  lock = hold(out, command, error, flag)
  _held.add(key)
  try:
    yield
  finally:
    _held.discard(key)
    lock.release()
