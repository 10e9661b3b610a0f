r"""Train one MLPerf run: `python -m tf_gp2bm.train --task=resnet --flagfile=flags/resnet/8xgpu.flags ...`

Multi-GPU: `horovodrun -np 8 python -m tf_gp2bm.train ...` (one process per GPU), or without Horovod
`--distribution=mirrored`. Writes OUTPUT_DIR/mlperf.log (MLPerf format, rank 0 only), OUTPUT_DIR/run.json,
OUTPUT_DIR/flags.txt and TensorBoard files in OUTPUT_DIR/tensorboard/.
Exit codes: 0 target reached, 3 not reached, 4 NaN/Inf guard, 2 bad input (every flag error too), 1 crash,
128+N ended by signal N (143: SIGTERM, 130: Ctrl-C); each of them closes mlperf.log and writes run.json.
"""
import dataclasses
import os
import signal
import sys
import tempfile
import time

import tf_gp2bm  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from absl import app, flags

from tf_gp2bm import cli_flags, dry_run, errors, kernels, mlperf_log, native_log  # noqa: F401  (dry_run: its flags)
from tf_gp2bm.errors import InputError, Outcome, Terminated
from tf_gp2bm.files import check_output_path, write_json_atomic
from tf_gp2bm.run_config import RunConfig
from tf_gp2bm.runtime import launcher_rank

FLAGS = flags.FLAGS
RUN_SUMMARY = "run.json"
FLAGS_TXT = "flags.txt"


def _log(message):
  print(f"[tf_gp2bm] {message}", flush=True)


def _raise_terminated(signum, frame):
  del frame
  # A second signal must not cut the log closing short: the scheduler's SIGKILL is the next step anyway.
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  raise Terminated(signum)


def _check_output_dir(path, chief, rank):
  """Bad input before anything loads: a file in the way, a path past the file system's limits, no write permission
  (for the folder and everything this process writes in it), or a finished run already there. The tensorboard
  folder is checked by training_run (its name lives with TensorFlow's summaries)."""
  check_output_path(path, True, f"--output_dir={path}")
  logs = os.path.join(path, native_log.LOG_DIR)
  check_output_path(logs, True, f"--output_dir={path}: {logs}")
  written = [native_log.log_path(path, rank)]
  if chief:
    written += [os.path.join(path, name) for name in (mlperf_log.LOG_NAME, RUN_SUMMARY, FLAGS_TXT)]
  for file in written:
    check_output_path(file, False, f"--output_dir={path}: {file}")
  if chief:  # the other ranks write no MLPerf log, and would race rank 0 creating it
    mlperf_log.check_new_log(os.path.join(path, mlperf_log.LOG_NAME))


def _run(config):
  # TensorFlow and the model garden load with this module: importing it here keeps them out of --help and flag
  # errors, which then answer in a fraction of a second.
  from tf_gp2bm import training_run
  return training_run.run(config, _log)


def _write_summary(outcome, config, wall_s):
  summary = {
      "task": FLAGS.task, "config": FLAGS.config_name, "seed": config.seed if config else FLAGS.seed,
      "status": "success" if outcome.code == errors.EXIT_SUCCESS else "aborted", "exit_code": outcome.code,
      "reason": outcome.reason, "samples_trained": outcome.samples_trained, "evals": outcome.evals,
      "wall_s": round(wall_s, 1), "world_size": outcome.world_size, "kernels": kernels.audit(),
  }
  write_json_atomic(os.path.join(FLAGS.output_dir, RUN_SUMMARY), summary)
  with open(os.path.join(FLAGS.output_dir, FLAGS_TXT), "w") as f:
    f.write(FLAGS.flags_into_string())
  return summary


def _report(outcome):
  if outcome.code in (errors.EXIT_SUCCESS, errors.EXIT_NOT_CONVERGED):
    return
  prefix = "error: " if outcome.code in (errors.EXIT_BAD_INPUT, errors.EXIT_CRASH) else "[tf_gp2bm] "
  print(prefix + outcome.reason, file=sys.stderr, flush=True)


def _dry_run(config):
  """The run's init on a planning runtime, its MLPerf log in a scratch folder (the lines reach the terminal)."""
  native_log.route_stderr(os.devnull)  # a review on the terminal: TensorFlow's C++ chatter is not part of it
  with tempfile.TemporaryDirectory(prefix="tf_gp2bm_dry_run_") as scratch:
    outcome = _run(dataclasses.replace(config, output_dir=scratch))
  _report(outcome)
  return outcome.code


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected argument(s) {' '.join(argv[1:])!r}: flags take the form --name=value",
          file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  if FLAGS.dry_run:
    try:
      return _dry_run(RunConfig.from_flags(FLAGS))
    except InputError as e:
      print(f"error: {e}", file=sys.stderr)
      return errors.EXIT_BAD_INPUT
  rank = launcher_rank() or 0
  try:
    for name in ("task", "output_dir"):
      if not getattr(FLAGS, name):
        raise InputError(f"--{name} is required")
    _check_output_dir(FLAGS.output_dir, chief=rank == 0, rank=rank)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  native_log.route_stderr(native_log.log_path(FLAGS.output_dir, rank))
  t0 = time.time()
  signal.signal(signal.SIGTERM, _raise_terminated)
  signal.signal(signal.SIGINT, _raise_terminated)
  config = None
  try:
    config = RunConfig.from_flags(FLAGS)  # a bad task flag ends the run here, with its run.json
    outcome = _run(config)
  except InputError as e:
    outcome = Outcome(errors.EXIT_BAD_INPUT, str(e), rank=rank)
  except Terminated as e:  # arrived while TensorFlow was loading, before the run's log existed
    outcome = Outcome(e.exit_code, str(e), rank=rank)
  # From here the run is over: finish writing its record whatever arrives.
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  _report(outcome)
  if outcome.rank == 0:
    summary = _write_summary(outcome, config, time.time() - t0)
    _log(f"{summary['status']}: {outcome.reason} ({summary['wall_s']}s); log in {FLAGS.output_dir}")
  return outcome.code


if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.flags_parser(__doc__))
