r"""Throughput benchmark of a task's compiled train step (prints figures; not a test).

    python -m tf_gp2bm.bench --task=resnet --flagfile=flags/resnet/8xgpu.flags [--data_dir=DIR]
        [--bench_steps=50] [--export_hlo=/tmp/resnet_step]   # writes .hlo.pb/.hlo.txt for gpu_step_bench
    python -m tf_gp2bm.bench --task=resnet --pipeline_only --data_dir=DIR --reference_dir=MLCOMMONS_TRAINING \
        [--pipeline_cores=3] [--pipeline_repeats=3]   # input pipeline vs the real reference input_fn, same cores

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

FLAGS = flags.FLAGS
flags.DEFINE_integer("bench_steps", 30, "Timed steps per measurement.")
flags.DEFINE_string("export_hlo", None, "Path prefix: write PREFIX.hlo.pb and PREFIX.hlo.txt of the train step.")
flags.DEFINE_bool("export_only", False, "With --export_hlo: write the step without running it here (a CPU need not "
                  "run a GPU-sized step; scripts/gpu/prepare.sh exports this way).")
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
flags.DEFINE_integer("pipeline_repeats", 3, "ResNet --pipeline_only: alternating reference/ours runs.",
                     lower_bound=1)


def _timed(fn, steps, samples_per_step):
  fn(1)  # warm (compiles the loop for this shape)
  t0 = time.perf_counter()
  fn(steps)
  dt = time.perf_counter() - t0
  return steps * samples_per_step / dt, dt / steps


def export_hlo(step_fn, batch, prefix):
  """Writes the compiled step as HLO for ../shared/tools/gpu_step_bench (variables become parameters)."""
  ir = step_fn.experimental_get_compiler_ir(batch)
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  with open(prefix + ".hlo.pb", "wb") as f:
    f.write(ir(stage="hlo_serialized"))
  with open(prefix + ".hlo.txt", "w") as f:
    f.write(ir(stage="hlo"))
  return prefix + ".hlo.pb"


def packing_factor(packed_dir):
  """Sequences per row of packed records, from the pack stage's manifest."""
  from tf_gp2bm.files import read_json
  from tf_gp2bm.tasks.bert import packing
  path = os.path.join(packed_dir, packing.MANIFEST)
  if not os.path.isfile(path):
    raise InputError(f"--packed_data_dir={packed_dir}: no {packing.MANIFEST}; expected the output of "
                     "`python -m data_prep.wikipedia pack`")
  total = read_json(path).get("total", {})
  if not total.get("rows") or not total.get("sequences"):
    raise InputError(f"{path}: no total.sequences / total.rows")
  return total["sequences"] / total["rows"]


def run_resnet_pipeline_bench():
  """Our pipeline vs the real reference input_fn, each in its own process pinned to the same cores."""
  from tf_gp2bm.tasks.resnet import pipeline_bench
  if not FLAGS.data_dir:
    raise InputError("--pipeline_only needs --data_dir: records written by `python -m data_prep.imagenet convert`")
  cores = pipeline_bench.parse_cores(FLAGS.pipeline_cores or str(max(os.sched_getaffinity(0))))
  pipeline_bench.find_reference(FLAGS.reference_dir)
  from tf_gp2bm.tasks.resnet.imagenet_input import ImageNetRecords
  for records in (FLAGS.data_dir, FLAGS.reference_data_dir):
    if records:
      ImageNetRecords(records).shards("train")
  pipeline_bench.compare(FLAGS.data_dir, FLAGS.reference_dir, cores, FLAGS.pipeline_batch_size,
                         FLAGS.pipeline_batches, FLAGS.pipeline_repeats, out=lambda m: print(m, flush=True),
                         reference_data_dir=FLAGS.reference_data_dir, stages=FLAGS.pipeline_stages)


def run_pipeline_bench(task):
  if not hasattr(task, "pipeline_benchmark"):
    raise InputError(f"--pipeline_only: task {FLAGS.task} has no input-pipeline benchmark")
  for line in task.pipeline_benchmark(FLAGS.pipeline_batches):
    print(line, flush=True)


def main(argv):
  del argv
  if FLAGS.pipeline_only and FLAGS.task == "resnet":
    try:
      run_resnet_pipeline_bench()
    except InputError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    return 0
  import tensorflow as tf
  from tf_gp2bm.mlperf_log import MLPerfLogger
  from tf_gp2bm.runtime.factory import create_runtime
  from tf_gp2bm.runtime.precision import Precision
  from tf_gp2bm.trainer import Trainer

  if not FLAGS.task:
    print("error: --task is required", file=sys.stderr)
    return 2
  try:
    runtime = create_runtime(FLAGS.distribution)
    precision = Precision(FLAGS.precision)
    kernels.load_plugin(FLAGS.kernels)
    task = tasks.create(FLAGS.task, runtime, FLAGS)
    task.seed = 0
    factor = packing_factor(FLAGS.packed_data_dir) if FLAGS.task == "bert" and FLAGS.packed_data_dir else None
    if FLAGS.data_dir:
      task.check_inputs()
    if FLAGS.pipeline_only:
      run_pipeline_bench(task)
      return 0
    trainer = Trainer(task, runtime, precision, MLPerfLogger(None, enabled=False), xla=FLAGS.xla,
                      steps_per_loop=FLAGS.steps_per_loop, log=lambda m: print(f"[bench] {m}", flush=True))
    trainer.build()
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

  if factor:
    from tf_gp2bm.tasks.bert import packing
    c = task.config
    packed = packing.synthetic_batch(per_process, c.max_seq_length, c.max_predictions_per_seq,
                                     task.model_config.vocab_size, factor)

    @tf.function
    def packed_loop(n):
      for _ in tf.range(n):
        runtime.run(trainer.replica_step, (packed,))

    rows, step_s = _timed(lambda n: packed_loop(tf.constant(n)), FLAGS.bench_steps, per_process)
    print(f"synthetic packed rows       : {rows:,.1f} rows/s per process, {step_s * 1e3:.1f} ms/step, "
          f"{factor:.3f} sequences per row", flush=True)
    print(f"effective sequences/s       : unpacked {rate:,.1f}, packed {rows * factor:,.1f} per process "
          f"({rows * factor / rate:.2f}x)", flush=True)

  if FLAGS.data_dir:
    it = iter(runtime.distribute_dataset(task.train_dataset))
    rate, step_s = _timed(lambda n: trainer.train_loop(it, tf.constant(n)), FLAGS.bench_steps, per_process)
    print(f"real input pipeline         : {rate:,.1f} samples/s per process, {step_s * 1e3:.1f} ms/step", flush=True)

  return export(trainer, batch) if FLAGS.export_hlo else 0


def export(trainer, batch):
  if not FLAGS.export_hlo:
    print("error: --export_only needs --export_hlo=PREFIX", file=sys.stderr)
    return 2
  if not (FLAGS.xla and trainer.fused_step):
    print("error: --export_hlo needs --xla and a single-replica (fused) step", file=sys.stderr)
    return 2
  path = export_hlo(trainer.replica_step, batch, FLAGS.export_hlo)
  print(f"exported {path} (+ .hlo.txt); next: python ../shared/tools/gpu_step_bench/prepare.py {path}")
  return 0


MAIN_FLAGS = ("task", "flagfile", "data_dir", "bench_steps", "export_hlo", "export_only", "pipeline_only",
              "reference_dir",
              "pipeline_cores", "pipeline_repeats", "pipeline_batches", "pipeline_batch_size")

if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.flags_parser(__doc__, MAIN_FLAGS))
