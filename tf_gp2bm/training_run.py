"""One training run inside its MLPerf log: init_start .. run_stop, whatever ends it.

`run` never raises for a run that ends badly: bad input, the NaN/Inf guard, a crash, SIGTERM or Ctrl-C each close
the log with `run_stop aborted` (once the clock runs) and come back as an Outcome with their exit code.
tf_gp2bm.train is the command line around it (flags, --help, run.json) and stays free of TensorFlow.
"""
import hashlib
import logging
import os
import random
import sys
import traceback

import tensorflow as tf
import tf_keras
from mlperf_logging.mllog import constants as C

from tf_gp2bm import dry_run, errors, kernels, mlperf_log, native_log, tasks
from tf_gp2bm.errors import InputError, NonFiniteLoss, Outcome, Terminated
from tf_gp2bm.files import check_output_path
from tf_gp2bm.kernels import determinism
from tf_gp2bm.runtime import launcher_rank
from tf_gp2bm.runtime.factory import create_runtime
from tf_gp2bm.runtime.precision import Precision
from tf_gp2bm.summaries import LOG_SUBDIR as TENSORBOARD_DIR, RunSummaries
from tf_gp2bm.trainer import Trainer


def _log_submission(ml, config, task_cls):
  ml.event(C.SUBMISSION_BENCHMARK, task_cls.benchmark)
  ml.event(C.SUBMISSION_ORG, config.submission_org)
  ml.event(C.SUBMISSION_DIVISION, C.CLOSED if config.closed else C.OPEN)
  ml.event(C.SUBMISSION_STATUS, config.submission_status)
  ml.event(C.SUBMISSION_PLATFORM, config.submission_platform)


def _write_weights_digest(trainer, output_dir, rank):
  digest = hashlib.sha256()
  for v in trainer.state:
    digest.update(v.numpy().tobytes())
  with open(os.path.join(output_dir, f"weights_digest.rank{rank}"), "w") as f:
    f.write(digest.hexdigest() + "\n")


def _diagnose(task, error):
  """The task's line naming the file and record behind a data error, or None for a real crash. A diagnosis that
  fails itself (it reads the data again) leaves the crash as it was."""
  if task is None:
    return None
  try:
    return task.diagnose_data_error(error)
  except Exception:  # noqa: BLE001 -- the original error is the one to report
    traceback.print_exc()
    return None


def _route_tensorflow_python_log(path):
  """TensorFlow's Python warnings (AutoGraph, retracing, deprecations) go to the run's tensorflow_logs/; its errors
  still reach the terminal. Not propagated, or absl's root handler would print each one a second time."""
  logger = tf.get_logger()
  to_file = logging.FileHandler(path)
  to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
  to_terminal = logging.StreamHandler(sys.stderr)
  to_terminal.setLevel(logging.ERROR)
  logger.handlers = [to_file, to_terminal]
  logger.propagate = False


def _create_runtime(config):
  if config.dry_run:  # a plan for N replicas: no device is started
    return dry_run.PlanningRuntime(config.dry_run_replicas)
  return create_runtime(config.distribution)


def seed_random_generators(seed, rank):
  """Seeds Python, NumPy and TensorFlow from the run's seed. Dropout seeds are drawn from Python's RNG (the
  kernels' seed streams), which is offset by the rank, so each rank draws its own dropout masks as the
  reference's replicas do; the weights still start equal everywhere (rank 0's are broadcast)."""
  tf_keras.utils.set_random_seed(seed)
  random.seed(seed + rank)


def run(config, log):
  """Everything between init_start and run_stop for a RunConfig (a dry run: init, then the plan). Returns an
  Outcome."""
  runtime = ml = summaries = task = trainer = None
  _route_tensorflow_python_log(native_log.log_path(config.output_dir, launcher_rank() or 0))
  try:
    runtime = _create_runtime(config)
    if runtime.is_chief and not config.dry_run:  # TensorBoard's folder too, before the run's log exists
      tensorboard = os.path.join(config.output_dir, TENSORBOARD_DIR)
      check_output_path(tensorboard, True, f"--output_dir={config.output_dir}: {tensorboard}")
    chief_log = log if runtime.is_chief else (lambda *_: None)
    ml = mlperf_log.MLPerfLogger(os.path.join(config.output_dir, mlperf_log.LOG_NAME), enabled=runtime.is_chief)
    ml.start(C.INIT_START)
    _log_submission(ml, config, tasks.task_class(config.task))
    ml.event(C.SEED, config.seed)
    seed_random_generators(config.seed, runtime.rank)
    tf.config.optimizer.set_jit(False)  # XLA only where we ask for it: the compiled step
    chief_log(f"runtime: {runtime.describe()}")
    if config.deterministic:
      determinism.enable()
      chief_log("deterministic: op determinism on (XLA included), input pipelines ordered")
    precision = Precision(config.precision)
    swapped = kernels.load_plugin(config.kernels)
    if swapped:
      chief_log(f"vendor kernels from {config.kernels}: {', '.join(swapped)}")
    ml.event(kernels.MLLOG_KEY, kernels.audit(with_files=False))
    task = tasks.create(config.task, runtime, config.task_config, config.seed)
    if config.dry_run:  # the rest of init as a real run logs it, then the plan; no data is read
      return Outcome(dry_run.finish(task, ml, config.cache_clear, chief_log), "dry run")
    task.check_inputs()
    for key, value in task.hyperparameters().items():
      ml.event(key, value)
    summaries = RunSummaries(config.output_dir, enabled=runtime.is_chief, profile_steps=config.profile_steps)
    trainer = Trainer(task, runtime, precision, ml, xla=config.xla, steps_per_loop=config.steps_per_loop,
                      log=chief_log, summaries=summaries)
    trainer.build()
    trainer.warm_up()
    ml.event(C.CACHE_CLEAR, config.cache_clear)
    ml.end(C.INIT_STOP)
    success = trainer.run()
    if config.weights_digest:
      _write_weights_digest(trainer, config.output_dir, runtime.rank)
    code = errors.EXIT_SUCCESS if success else errors.EXIT_NOT_CONVERGED
    reason = "target reached" if success else "target not reached within the planned steps"
  except (InputError, kernels.KernelError) as e:  # a vendor kernel that breaks its contract is bad --kernels input
    code, reason = errors.EXIT_BAD_INPUT, str(e)
  except NonFiniteLoss as e:
    code, reason = errors.EXIT_NON_FINITE, str(e)
  except Terminated as e:
    code, reason = e.exit_code, str(e)
  except Exception as e:  # a crash still closes the run in the log
    diagnosis = _diagnose(task, e)
    if diagnosis:
      code, reason = errors.EXIT_BAD_INPUT, diagnosis
    else:
      traceback.print_exc()
      code, reason = errors.EXIT_CRASH, f"{type(e).__name__}: {e}"
  finally:
    if ml and ml.enabled and ml.run_started and not ml.run_stopped:
      ml.end(C.RUN_STOP, metadata={"status": C.ABORTED})
    if ml:
      ml.close()
    if summaries:
      summaries.close()
  rank = runtime.rank if runtime else (launcher_rank() or 0)
  return Outcome(code, reason, samples_trained=trainer.samples_trained if trainer else 0,
                 evals=list(trainer.accuracies) if trainer else [], rank=rank,
                 world_size=runtime.size if runtime else 1)
