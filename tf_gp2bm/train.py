r"""Train one MLPerf run: `python -m tf_gp2bm.train --task=resnet --flagfile=flags/resnet/8xgpu.flags ...`

Multi-GPU: `horovodrun -np 8 python -m tf_gp2bm.train ...` (one process per GPU), or without Horovod
`--distribution=mirrored`. Writes OUTPUT_DIR/mlperf.log (MLPerf format, rank 0 only), OUTPUT_DIR/run.json and
OUTPUT_DIR/flags.txt. Exit codes: 0 target reached, 3 not reached, 4 NaN/Inf guard, 2 bad input, 1 crash.
"""
import json
import os
import sys
import time
import traceback

import tf_gp2bm  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from absl import app, flags
from mlperf_logging.mllog import constants as C

from tf_gp2bm import errors, kernels, mlperf_log, tasks
from tf_gp2bm.errors import InputError, NonFiniteLoss

from tf_gp2bm import cli_flags  # noqa: F401  (defines the common flags and every task's flags)

FLAGS = flags.FLAGS


def _draw_seed():
  return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def _log_submission(ml, task_cls):
  ml.event(C.SUBMISSION_BENCHMARK, task_cls.benchmark)
  ml.event(C.SUBMISSION_ORG, FLAGS.submission_org)
  ml.event(C.SUBMISSION_DIVISION, C.CLOSED)
  ml.event(C.SUBMISSION_STATUS, FLAGS.submission_status)
  ml.event(C.SUBMISSION_PLATFORM, FLAGS.submission_platform)


def _write_weights_digest(trainer, rank):
  import hashlib
  digest = hashlib.sha256()
  for v in trainer.state:
    digest.update(v.numpy().tobytes())
  with open(os.path.join(FLAGS.output_dir, f"weights_digest.rank{rank}"), "w") as f:
    f.write(digest.hexdigest() + "\n")


def _diagnose_data_error(error, trainer):
  """Turns a data error raised inside tf.data into a message naming the file, or None for a real crash."""
  import tensorflow as tf
  message = getattr(error, "message", str(error))
  if isinstance(error, tf.errors.InvalidArgumentError) and "label out of range in" in message:
    detail = message.split("label out of range in", 1)[1].strip().splitlines()[0]
    return f"label out of range in {detail} (expected the label convention written in the manifest)"
  task = trainer.task if trainer else None
  if task is not None and hasattr(task, "diagnose_data_error"):
    return task.diagnose_data_error(error)
  return None


def run_training(log):
  """Everything between init_start and run_stop. Returns (exit_code, reason, trainer or None)."""
  import tensorflow as tf  # imported here so --help stays fast
  import tf_keras
  from tf_gp2bm.runtime import Precision, create_runtime
  from tf_gp2bm.trainer import Trainer

  runtime = create_runtime(FLAGS.distribution)
  chief_log = log if runtime.is_chief else (lambda *_: None)
  ml = mlperf_log.MLPerfLogger(os.path.join(FLAGS.output_dir, mlperf_log.LOG_NAME), enabled=runtime.is_chief)
  ml.start(C.INIT_START)
  task_cls = tasks.get_task_class(FLAGS.task)
  _log_submission(ml, task_cls)
  seed = FLAGS.seed if FLAGS.seed is not None else _draw_seed()
  ml.event(C.SEED, seed)
  tf_keras.utils.set_random_seed(seed)
  tf.config.optimizer.set_jit(False)  # XLA only where we ask for it: the compiled step
  trainer = None
  try:
    chief_log(f"runtime: {runtime.describe()}")
    precision = Precision(FLAGS.precision)
    swapped = kernels.load_plugin(FLAGS.kernels)
    if swapped:
      chief_log(f"vendor kernels from {FLAGS.kernels}: {', '.join(swapped)}")
    task = task_cls(runtime, FLAGS)
    task.seed = seed
    task.check_inputs()
    for key, value in task.hyperparameters().items():
      ml.event(key, value)
    trainer = Trainer(task, runtime, precision, ml, xla=FLAGS.xla, steps_per_loop=FLAGS.steps_per_loop,
                      log=chief_log)
    trainer.build()
    trainer.warm_up()
    ml.event(C.CACHE_CLEAR, FLAGS.cache_clear)
    ml.end(C.INIT_STOP)
    success = trainer.run()
    if FLAGS.weights_digest:
      _write_weights_digest(trainer, runtime.rank)
    reason = "target reached" if success else "target not reached within the planned steps"
    return (errors.EXIT_SUCCESS if success else errors.EXIT_NOT_CONVERGED), reason, trainer, seed, runtime
  except InputError as e:
    code, reason = errors.EXIT_BAD_INPUT, str(e)
  except NonFiniteLoss as e:
    code, reason = errors.EXIT_NON_FINITE, str(e)
  except Exception as e:  # a crash still closes the run in the log
    diagnosis = _diagnose_data_error(e, trainer)
    if diagnosis:
      code, reason = errors.EXIT_BAD_INPUT, diagnosis
    else:
      traceback.print_exc()
      code, reason = errors.EXIT_CRASH, f"{type(e).__name__}: {e}"
  finally:
    if ml.enabled and ml.run_started and not ml.run_stopped:
      ml.end(C.RUN_STOP, metadata={"status": C.ABORTED})
    ml.close()
  return code, reason, trainer, seed, runtime


def main(argv):
  del argv
  for name in ("task", "output_dir"):
    if not getattr(FLAGS, name):
      print(f"error: --{name} is required", file=sys.stderr)
      return errors.EXIT_BAD_INPUT
  t0 = time.time()
  log = lambda msg: print(f"[tf_gp2bm] {msg}", flush=True)  # noqa: E731
  try:
    code, reason, trainer, seed, runtime = run_training(log)
  except InputError as e:  # before init_start: nothing logged yet
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  if code != errors.EXIT_SUCCESS:
    print(f"error: {reason}" if code in (errors.EXIT_BAD_INPUT, errors.EXIT_CRASH) else f"[tf_gp2bm] {reason}",
          file=sys.stderr if code != errors.EXIT_NOT_CONVERGED else sys.stdout, flush=True)
  if runtime.is_chief:
    summary = {
        "task": FLAGS.task, "config": FLAGS.config_name, "seed": seed,
        "status": "success" if code == errors.EXIT_SUCCESS else "aborted", "exit_code": code, "reason": reason,
        "samples_trained": trainer.samples_trained if trainer else 0,
        "evals": trainer.accuracies if trainer else [], "wall_s": round(time.time() - t0, 1),
        "world_size": runtime.size,
    }
    with open(os.path.join(FLAGS.output_dir, "run.json"), "w") as f:
      json.dump(summary, f, indent=2)
    with open(os.path.join(FLAGS.output_dir, "flags.txt"), "w") as f:
      f.write(FLAGS.flags_into_string())
    log(f"{summary['status']}: {reason} ({summary['wall_s']}s); log in {FLAGS.output_dir}")
  return code


if __name__ == "__main__":
  app.run(main)
