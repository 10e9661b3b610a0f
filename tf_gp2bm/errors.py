"""Errors that end a run with a clear message and a known exit code (see tf_gp2bm.train)."""


class InputError(ValueError):
  """Bad data, flags or checkpoint: names the file or flag and what was expected. Exit code 2."""


class NonFiniteLoss(RuntimeError):
  """The NaN/Inf guard fired: the run is aborted early and counts as non-converged. Exit code 4."""


EXIT_SUCCESS = 0
EXIT_CRASH = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3
EXIT_NON_FINITE = 4
