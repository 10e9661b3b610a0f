"""How a run ends: the errors that end it with a clear message, their exit codes, and the Outcome run.json records
(see tf_gp2bm.train)."""
import dataclasses
import signal
from typing import List, Tuple


class InputError(ValueError):
  """Bad data, flags or checkpoint: names the file or flag and what was expected. Exit code 2."""


class NonFiniteLoss(RuntimeError):
  """The NaN/Inf guard fired: the run is aborted early and counts as non-converged. Exit code 4."""


class Terminated(BaseException):
  """SIGTERM (what schedulers send) or SIGINT arrived: the run ends as aborted, with its log closed.

  A BaseException, like KeyboardInterrupt, so no `except Exception` on the way up swallows it.
  """

  def __init__(self, signum):
    super().__init__(f"terminated by {signal.Signals(signum).name}")
    self.exit_code = 128 + signum  # the shell's convention for "ended by signal N"


EXIT_SUCCESS = 0
EXIT_CRASH = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3
EXIT_NON_FINITE = 4
# Terminated runs exit 128 + the signal number: 143 for SIGTERM, 130 for SIGINT.


@dataclasses.dataclass
class Outcome:
  """How a run ended: exit code, reason and how far it got. Unpacks as (code, reason, ...)."""
  code: int
  reason: str
  samples_trained: int = 0
  evals: List[Tuple] = dataclasses.field(default_factory=list)
  rank: int = 0
  world_size: int = 1

  def __iter__(self):
    return iter(dataclasses.astuple(self))
