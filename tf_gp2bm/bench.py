r"""Throughput benchmark of a task's compiled train step (prints figures; not a test).

    python -m tf_gp2bm.bench --task=resnet --flagfile=flags/resnet/8xgpu.flags [--data_dir=DIR]
        [--bench_steps=50] [--export_hlo=/tmp/resnet_step]   # writes .hlo.pb/.hlo.txt for scripts/gpu/step_timer.py
    python -m tf_gp2bm.bench --task=resnet --pipeline_only --data_dir=DIR --reference_dir=MLCOMMONS_TRAINING \
        [--pipeline_cores=3] [--pipeline_repeats=3]   # input pipeline vs the real reference input_fn, same cores
    python -m tf_gp2bm.bench --task=resnet --pipeline_only --pipeline_data_service --data_dir=DIR
        # train input from tf.data service workers (1, then 2, each on its own core) vs local input on one core

Figures: samples/s of the train step on device-resident synthetic data (the step alone), and through the real
input pipeline when --data_dir is given. Per process: multiply by the number of GPUs for a node under Horovod.
"""
import os
import sys
import time

import tf_gp2bm  # noqa: F401
from absl import app, flags

from tf_gp2bm import cli_flags  # noqa: F401
from tf_gp2bm import kernels, tasks
from tf_gp2bm.errors import InputError
from tf_gp2bm.run_config import RunConfig
from tf_gp2bm.tasks import spec as task_spec
from tf_gp2bm.tasks.base import PipelineBenchOptions

FLAGS = flags.FLAGS
flags.DEFINE_integer("bench_steps", 30, "Timed steps per measurement.")
flags.DEFINE_string("export_hlo", None, "Path prefix: write PREFIX.hlo.pb and PREFIX.hlo.txt of the train step.")
flags.DEFINE_bool("export_only", False, "With --export_hlo: write the step without running it here (a CPU need not "
                  "run a GPU-sized step; scripts/gpu/prepare.sh exports this way).")
flags.DEFINE_bool("export_compiled", False, "With --export_hlo: write the step as XLA compiled it for this machine's "
                  "backend (PREFIX.optimized.hlo.txt; XLA_FLAGS=--xla_dump_to=DIR --xla_dump_hlo_as_text also "
                  "dumps its buffer assignment, which `kernel_check --full_size` reads). With --kernels, a step that "
                  "uses none of the replaced hot spots is not compiled (nothing to compare).")
flags.DEFINE_bool("pipeline_only", False, "Only time the input pipeline (ours vs the reference's).")
flags.DEFINE_integer("pipeline_batches", 40, "Batches per input-pipeline measurement.", lower_bound=1)
flags.DEFINE_integer("pipeline_batch_size", 64, "ResNet --pipeline_only: images per batch.", lower_bound=1)
flags.DEFINE_string("reference_dir", None, "ResNet --pipeline_only: a checkout of github.com/mlcommons/training; "
                    "its resnet-tf2 imagenet_preprocessing.input_fn is what our pipeline is timed against.")
flags.DEFINE_bool("pipeline_stages", False, "ResNet --pipeline_only: also time each stage of one image (draw the "
                  "crop, decode, resize, the fused op) in compiled loops.")
flags.DEFINE_string("reference_data_dir", None, "ResNet --pipeline_only: records the reference reads (default: "
                    "--data_dir), e.g. the same images converted with --no_restart_markers, as the reference's own "
                    "converter writes them.")
flags.DEFINE_string("pipeline_cores", None, "ResNet --pipeline_only: CPU cores both pipelines are pinned to, "
                    "taskset style (3 or 0-3); default: the last core this process may use.")
flags.DEFINE_string("packed_data_dir", None, "BERT: packed records (`python -m data_prep.wikipedia pack`); the step "
                    "is also timed on packed rows with their manifest's sequences per row, and effective "
                    "sequences/s are compared.")
flags.DEFINE_bool("pipeline_data_service", False, "--pipeline_only: time the train input a tf.data service "
                  "dispatcher and 1, then 2 workers (each its own process on its own core) deliver, against the "
                  "local pipeline on one core, where the task supports it.")
flags.DEFINE_integer("pipeline_repeats", 3, "ResNet --pipeline_only: alternating reference/ours runs.",
                     lower_bound=1)


def _timed(fn, steps, samples_per_step):
  fn(1)  # warm (compiles the loop for this shape)
  t0 = time.perf_counter()
  fn(steps)
  dt = time.perf_counter() - t0
  return steps * samples_per_step / dt, dt / steps


def export_hlo(step_fn, batch, prefix, compiled=False):
  """Writes the step as HLO for scripts/gpu/step_timer.py (variables become parameters); `compiled`: the HLO XLA
  optimized for this machine's backend instead (compiling it, with buffer assignment), as PREFIX.optimized.hlo.txt."""
  ir = step_fn.experimental_get_compiler_ir(batch)
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  if compiled:
    with open(prefix + ".optimized.hlo.txt", "w") as f:
      f.write(ir(stage="optimized_hlo"))
    return prefix + ".optimized.hlo.txt"
  with open(prefix + ".hlo.pb", "wb") as f:
    f.write(ir(stage="hlo_serialized"))
  with open(prefix + ".hlo.txt", "w") as f:
    f.write(ir(stage="hlo"))
  return prefix + ".hlo.pb"


def _pipeline_options():
  return PipelineBenchOptions(
      batches=FLAGS.pipeline_batches, batch_size=FLAGS.pipeline_batch_size, repeats=FLAGS.pipeline_repeats,
      cores=FLAGS.pipeline_cores, reference_dir=FLAGS.reference_dir, reference_data_dir=FLAGS.reference_data_dir,
      stages=FLAGS.pipeline_stages, packed_data_dir=FLAGS.packed_data_dir,
      data_service=FLAGS.pipeline_data_service)


def run_pipeline_bench():
  """The task's own input-pipeline benchmark (Task.pipeline_benchmark), on its config as the flags give it."""
  config = tasks.config_class(FLAGS.task).from_flags(FLAGS)
  tasks.task_class(FLAGS.task).pipeline_benchmark(config, _pipeline_options(), out=lambda m: print(m, flush=True))


def main(argv):
  del argv
  if not FLAGS.task:
    print("error: --task is required", file=sys.stderr)
    return 2
  if FLAGS.pipeline_only:
    try:
      run_pipeline_bench()
    except InputError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    return 0
  import tensorflow as tf

  try:
    config = RunConfig.from_flags(FLAGS)
    runtime, task, trainer, extra_batches = build_step(config)
    if not FLAGS.export_only:
      trainer.warm_up()
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  gbs = task.global_batch_size
  per_process = gbs // runtime.size
  batch = task.synthetic_batch(True)
  print(f"[bench] task {FLAGS.task}: global batch {gbs} ({task.micro_batch_size} x {task.accumulation_steps} "
        f"accumulation x {runtime.num_replicas} replica(s)), precision {FLAGS.precision}, xla {FLAGS.xla}, "
        f"kernels replaced: {kernels.replaced() or 'none'}", flush=True)
  if FLAGS.export_only:
    return export(trainer, batch)

  @tf.function
  def synthetic_loop(n):
    for _ in tf.range(n):
      runtime.run(trainer.replica_step, (batch,))

  rate, step_s = _timed(lambda n: synthetic_loop(tf.constant(n)), FLAGS.bench_steps, per_process)
  print(f"synthetic (device-resident) : {rate:,.1f} samples/s per process, {step_s * 1e3:.1f} ms/step", flush=True)

  unit = task_spec.get(config.task).sample_unit
  for label, extra, per_row in extra_batches:

    @tf.function
    def extra_loop(n, extra=extra):
      for _ in tf.range(n):
        runtime.run(trainer.replica_step, (extra,))

    rows, step_s = _timed(lambda n: extra_loop(tf.constant(n)), FLAGS.bench_steps, per_process)
    print(f"{f'synthetic {label} rows':28}: {rows:,.1f} rows/s per process, {step_s * 1e3:.1f} ms/step, "
          f"{per_row:.3f} {unit} per row", flush=True)
    print(f"{f'effective {unit}/s':28}: unpacked {rate:,.1f}, {label} {rows * per_row:,.1f} per process "
          f"({rows * per_row / rate:.2f}x)", flush=True)

  if FLAGS.data_dir:
    it = iter(runtime.distribute_dataset(task.train_dataset))
    rate, step_s = _timed(lambda n: trainer.train_loop(it, tf.constant(n)), FLAGS.bench_steps, per_process)
    print(f"real input pipeline         : {rate:,.1f} samples/s per process, {step_s * 1e3:.1f} ms/step", flush=True)

  return export(trainer, batch) if FLAGS.export_hlo else 0


def build_step(config):
  """(runtime, task, trainer, extra step batches) of the train step as the flags give it, built and not run
  (InputError on bad input)."""
  from tf_gp2bm.mlperf_log import MLPerfLogger
  from tf_gp2bm.runtime.factory import create_runtime
  from tf_gp2bm.runtime.precision import Precision
  from tf_gp2bm.trainer import Trainer

  runtime = create_runtime(config.distribution)
  precision = Precision(config.precision)
  kernels.load_plugin(config.kernels)
  task = tasks.create(config.task, runtime, config.task_config, config.seed)
  extra_batches = task.step_benchmark_batches(_pipeline_options())
  if FLAGS.data_dir:
    task.check_inputs()
  trainer = Trainer(task, runtime, precision, MLPerfLogger(None, enabled=False), xla=config.xla,
                    steps_per_loop=config.steps_per_loop, log=lambda m: print(f"[bench] {m}", flush=True))
  trainer.build()
  return runtime, task, trainer, extra_batches


def export(trainer, batch):
  if not FLAGS.export_hlo:
    print("error: --export_only needs --export_hlo=PREFIX", file=sys.stderr)
    return 2
  if not (FLAGS.xla and trainer.fused_step):
    print("error: --export_hlo needs --xla and a single-replica (fused) step", file=sys.stderr)
    return 2
  if FLAGS.export_compiled and kernels.replaced():
    trainer.replica_step.get_concrete_function(batch)  # traces the step: the hot spots it looks up are recorded
    print(f"[bench] replaced hot spots in the step: {', '.join(kernels.used()) or 'none'}", flush=True)
    if not kernels.used():
      print("the step uses none of the replaced hot spots: not compiled")
      return 0
  path = export_hlo(trainer.replica_step, batch, FLAGS.export_hlo, FLAGS.export_compiled)
  if FLAGS.export_compiled:
    print(f"exported {path}")
  else:
    print(f"exported {path} (+ .hlo.txt); next: python scripts/gpu/prepare_step.py {FLAGS.export_hlo} "
          f"--task={FLAGS.task}")
  return 0


MAIN_FLAGS = ("task", "flagfile", "data_dir", "bench_steps", "export_hlo", "export_only", "export_compiled",
              "pipeline_only", "reference_dir", "pipeline_cores", "pipeline_repeats", "pipeline_batches",
              "pipeline_batch_size", "pipeline_data_service")

if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.flags_parser(__doc__, MAIN_FLAGS))
