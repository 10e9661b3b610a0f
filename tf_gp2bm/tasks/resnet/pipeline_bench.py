r"""Input-pipeline benchmark: our ResNet train preprocessing vs the real reference `imagenet_preprocessing.input_fn`.

    python -m tf_gp2bm.bench --task=resnet --pipeline_only --data_dir=RECORDS --reference_dir=MLCOMMONS_TRAINING

    python -m tf_gp2bm.bench --task=resnet --pipeline_only --pipeline_data_service --data_dir=RECORDS

The second form times the tf.data service (tf_gp2bm.data_service): a dispatcher and 1, then 2 workers, each its
own process pinned to its own core, and a consumer process receiving batches as a trainer does, against the local
fused pipeline on one core.

The reference is imported from the user's checkout of mlcommons/training (nothing of it lives in this project).
Each measurement is its own process pinned to the same CPU cores before TensorFlow starts, so TensorFlow sizes its
thread pools to those cores and both pipelines get exactly the same CPU; the two sides alternate, repeated, so a
change in the machine's load hits both. A worker prints one JSON line; `compare` runs the workers.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from tf_gp2bm import data_service
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.resnet.config import Config

# Where imagenet_preprocessing.py sits in a checkout of mlcommons/training (the benchmark moved once).
REFERENCE_SUBDIRS = ("retired_benchmarks/resnet-tf2/tensorflow2", "image_classification/tensorflow2", ".")
# The reference's input_fn, then ours with each way of making the train image (imagenet_input.IMAGE_MAKERS).
SIDES = ("reference", "tf", "fused")
LABELS = {"reference": "reference", "tf": "ours, TF ops", "fused": "ours, fused op"}


def find_reference(reference_dir):
  """The folder holding the reference imagenet_preprocessing.py, given the checkout (or that folder itself)."""
  if not reference_dir:
    raise InputError("--reference_dir is required: a checkout of github.com/mlcommons/training (the benchmark "
                     "compares against its resnet-tf2 imagenet_preprocessing.input_fn)")
  for sub in REFERENCE_SUBDIRS:
    folder = os.path.normpath(os.path.join(reference_dir, sub))
    if os.path.isfile(os.path.join(folder, "imagenet_preprocessing.py")):
      return folder
  raise InputError(f"--reference_dir={reference_dir}: no imagenet_preprocessing.py there or under "
                   f"{' or '.join(REFERENCE_SUBDIRS[:-1])}; expected a checkout of mlcommons/training")


def parse_cores(spec):
  """'3' or '0-3,6' (taskset's list format) -> sorted core ids, checked against this process's CPUs."""
  cores = set()
  try:
    for part in spec.split(","):
      lo, _, hi = part.partition("-")
      cores.update(range(int(lo), int(hi or lo) + 1))
  except ValueError:
    raise InputError(f"--pipeline_cores={spec!r}: expected core ids like 3 or 0-3,6") from None
  allowed = os.sched_getaffinity(0)
  if not cores or not cores <= allowed:
    raise InputError(f"--pipeline_cores={spec!r}: this process may run on cores {sorted(allowed)} only")
  return sorted(cores)


# --- worker side (its own process) --------------------------------------------------------------------------
def _reference_dataset(folder, files, batch_size, num_classes):
  sys.path.insert(0, folder)
  from absl import flags
  import imagenet_preprocessing  # the user's checkout
  # The reference reads three absl flags that its main module defines; give them the reference defaults.
  for name, define, default in (("num_classes", flags.DEFINE_integer, num_classes),
                                ("label_smoothing", flags.DEFINE_float, 0.0),
                                ("cache_decoded_image", flags.DEFINE_bool, False)):
    if name not in flags.FLAGS:
      define(name, default, "reference flag")
  flags.FLAGS(["pipeline_bench"])
  import tensorflow as tf
  return imagenet_preprocessing.input_fn(is_training=True, data_dir=None, batch_size=batch_size, dtype=tf.float32,
                                         filenames=files, drop_remainder=True)


def _our_dataset(data_dir, batch_size, image_size, image_op):
  import tensorflow as tf
  from tf_gp2bm.tasks.resnet import imagenet_input
  records = imagenet_input.ImageNetRecords(data_dir)
  return imagenet_input.train_dataset(records, tf.distribute.InputContext(), batch_size, image_size,
                                      records.num_classes, seed=0, image_op=image_op)


def measure(dataset, warmup_batches, batches):
  """(wall seconds, CPU seconds of every thread of this process) for `batches` batches after a warm-up."""
  it = iter(dataset)
  for _ in range(warmup_batches):  # opens the files and fills the shuffle buffer
    next(it)
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(it)
  return time.perf_counter() - wall, time.process_time() - cpu


WARMUP_BATCHES = 10  # batches a measuring process takes before its clock starts


# Per-image stages timed by `profile`, in the order printed.
STAGES = (("draw", "parse the record, draw the crop window and flip"),
          ("decode_full", "TF decode_jpeg of the whole image"),
          ("decode_eighth", "TF decode_jpeg at 1/8 scale (about the Huffman decoding alone)"),
          ("decode_crop", "TF decode_and_crop_jpeg alone"),
          ("tf", "TF ops: decode_and_crop_jpeg, flip, resize, round to uint8"),
          ("cut", "fused op's cut around the window alone (restart markers)"),
          ("fused", "fused op (cuts around the window when the JPEG has restart markers)"))


def profile(data_dir, images, image_size):
  """CPU milliseconds per image of each stage, each timed in one compiled loop over the same `images` train
  records and crop windows (the reference's sampling), so per-call overhead is left out."""
  import tensorflow as tf
  from tf_gp2bm.tasks.resnet import imagenet_input, jpeg_op
  records = imagenet_input.ImageNetRecords(data_dir)
  raw = list(tf.data.TFRecordDataset([f for f, _ in records.shards("train")]).take(images))  # read once
  encoded = tf.stack([imagenet_input._parse(r, "")[0] for r in raw])
  stream = imagenet_input.augment_stream(0, 0)
  draws = [imagenet_input._random_crop_flip(e, imagenet_input.element_seed(stream, i)) for i, e in enumerate(encoded)]
  windows, flips = tf.stack([w for w, _ in draws]), tf.stack([f for _, f in draws])
  stages = {
      "draw": lambda r, e, w, f: imagenet_input._random_crop_flip(imagenet_input._parse(r, "")[0],
                                                                  imagenet_input.element_seed(stream, 0))[0][0],
      "decode_full": lambda r, e, w, f: tf.io.decode_jpeg(e, channels=3)[0, 0, 0],
      "decode_eighth": lambda r, e, w, f: tf.io.decode_jpeg(e, channels=3, ratio=8)[0, 0, 0],
      "decode_crop": lambda r, e, w, f: tf.image.decode_and_crop_jpeg(e, w, channels=3)[0, 0, 0],
      "tf": lambda r, e, w, f: jpeg_op.tf_decode_crop_flip_resize(e, w, f, image_size)[0, 0, 0],
      "cut": lambda r, e, w, f: tf.strings.length(jpeg_op.cut_around(e, w)[0]),
      "fused": lambda r, e, w, f: jpeg_op.decode_crop_flip_resize(e, w, f, image_size)[0, 0, 0],
  }
  serialized = tf.stack(raw)
  out = {}
  for name, stage in stages.items():
    loop = tf.function(lambda stage=stage: tf.map_fn(lambda a: tf.cast(stage(*a), tf.int32),
                                                     (serialized, encoded, windows, flips),
                                                     fn_output_signature=tf.int32, parallel_iterations=1))
    loop()  # trace and warm up
    cpu = time.process_time()
    loop()
    out[name] = (time.process_time() - cpu) * 1e3 / int(encoded.shape[0])
  return out


def worker(argv):
  p = argparse.ArgumentParser(prog="python -m tf_gp2bm.tasks.resnet.pipeline_bench")
  p.add_argument("--side", choices=SIDES + ("profile", "service"), required=True)
  p.add_argument("--data_service", help="--side=service: HOST:PORT of the dispatcher")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--reference_folder")
  p.add_argument("--cores", required=True)
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--batches", type=int, default=40)
  p.add_argument("--warmup_batches", type=int, default=WARMUP_BATCHES)
  p.add_argument("--image_size", type=int, default=224)
  a = p.parse_args(argv)
  os.sched_setaffinity(0, parse_cores(a.cores))  # before TensorFlow sizes its thread pools
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tf_gp2bm  # noqa: F401
  from tf_gp2bm.tasks.resnet import imagenet_input
  records = imagenet_input.ImageNetRecords(a.data_dir)
  if a.side == "profile":
    print(json.dumps({"side": a.side, "ms_per_image": profile(a.data_dir, a.batches * a.batch_size,
                                                              a.image_size)}), flush=True)
    return 0
  if a.side == "reference":
    files = [f for f, _ in records.shards("train")]
    ds = _reference_dataset(a.reference_folder, files, a.batch_size, records.num_classes)
  elif a.side == "service":
    import tensorflow as tf
    ds = imagenet_input.train_dataset(records, tf.distribute.InputContext(), a.batch_size, a.image_size,
                                      records.num_classes, seed=0, image_op="fused", data_service=a.data_service,
                                      data_service_timeout_s=Config.data_service_timeout_s)  # as a trainer reads
  else:
    ds = _our_dataset(a.data_dir, a.batch_size, a.image_size, a.side)
  wall, cpu = measure(ds, a.warmup_batches, a.batches)
  images = a.batches * a.batch_size
  print(json.dumps({"side": a.side, "images_per_s": images / wall, "images_per_cpu_s": images / cpu}), flush=True)
  return 0


# --- driver side ------------------------------------------------------------------------------------------
def _load():
  with open("/proc/loadavg") as f:
    return float(f.read().split()[0])


def _run_worker(side, data_dir, folder, cores, batch_size, batches, image_size, timeout_s=600, extra=()):
  cmd = [sys.executable, "-m", "tf_gp2bm.tasks.resnet.pipeline_bench", f"--side={side}", f"--data_dir={data_dir}",
         f"--cores={','.join(map(str, cores))}", f"--batch_size={batch_size}", f"--batches={batches}",
         f"--image_size={image_size}"] + ([f"--reference_folder={folder}"] if folder else []) + list(extra)
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
  lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
  if r.returncode != 0 or not lines:
    raise RuntimeError(f"{side} pipeline worker failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
  return json.loads(lines[-1])


def compare(data_dir, reference_dir, cores, batch_size, batches, repeats, image_size=224, out=print,
            reference_data_dir=None, stages=False):
  """Alternates reference and tf_gp2bm workers on the same cores `repeats` times; returns {side: [results]}.
  The reference reads `reference_data_dir` (default: data_dir), e.g. the same images converted without restart
  markers, as the reference's own converter writes them. stages: also print where one image's CPU time goes.

  Two figures per run: images per wall second on the pinned cores, and images per CPU second (all threads of the
  worker). On a machine other jobs share, the pinned cores are not all ours and the wall figure moves with the
  load; the CPU-second figure is what one dedicated core would do and stays steady.
  """
  folder = find_reference(reference_dir)
  out(f"input pipeline: {batches} batches of {batch_size} at {image_size}px after a warm-up, pinned to core(s) "
      f"{','.join(map(str, cores))}, {repeats} alternating repeats")
  reference_data_dir = reference_data_dir or data_dir
  out(f"reference: {folder}/imagenet_preprocessing.py input_fn (float32, mean subtracted on the host)")
  out(f"records: ours {data_dir}" + (f", the reference's {reference_data_dir}" if reference_data_dir != data_dir
                                      else " (both sides)"))
  out(f"machine: {os.cpu_count()} cores, load average {_load():.2f} at start")
  results = {side: [] for side in SIDES}
  for i in range(repeats):
    for side in SIDES:
      records = reference_data_dir if side == "reference" else data_dir
      results[side].append(_run_worker(side, records, folder, cores, batch_size, batches, image_size))
    last = {side: results[side][-1] for side in SIDES}
    per_cpu = " ".join(f"{LABELS[side]} {last[side]['images_per_cpu_s']:6.1f}" for side in SIDES)
    out(f"  repeat {i + 1}: images per CPU-s: {per_cpu} | load {_load():.2f}")
  for key, what in (("images_per_s", f"images/s on {len(cores)} pinned core(s)"),
                    ("images_per_cpu_s", "images per CPU-second")):
    median = {side: statistics.median(r[key] for r in results[side]) for side in SIDES}
    ours = "  ".join(f"{LABELS[side]} {median[side]:7.1f} ({median[side] / median['reference']:.2f}x)"
                     for side in SIDES[1:])
    out(f"median {what}: reference {median['reference']:7.1f}  {ours}")
  if stages:
    ms = _run_worker("profile", data_dir, None, cores, batch_size, batches, image_size)["ms_per_image"]
    out(f"where one image's CPU time goes ({batches * batch_size} of our train records, ms per image, compiled "
        "loops, no tf.data):")
    for name, what in STAGES:
      out(f"  {what:70s} {ms[name]:6.3f}")
    fused = statistics.median(r["images_per_cpu_s"] for r in results["fused"])
    rest = 1e3 / fused - ms["draw"] - ms["fused"]
    out(f"  {'the rest of our fused pipeline (tf.data: read, shuffle, map, batch)':70s} {rest:6.3f}")
  return results


# --- the tf.data service ------------------------------------------------------------------------------------
def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _cpu_s(pid):
  """User + system CPU seconds of a process and its threads so far."""
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(role, port, args, core=None):
  """A dispatcher or worker process (pinned to `core` with taskset), returned once it serves."""
  pin = ["taskset", "-c", str(core)] if core is not None else []
  proc = subprocess.Popen([*pin, sys.executable, "-m", "tf_gp2bm.data_service", role, f"--port={port}", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
  for line in proc.stdout:
    if data_service.READY in line:
      return proc
  raise RuntimeError(f"data_service {role} exited ({proc.wait()}) before it served")


def _stop_servers(procs):
  for proc in procs:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _through_service(data_dir, workers, cores, batch_size, batches, image_size):
  """A fresh dispatcher and `workers` workers, worker i on cores[i] (cycled), the consumer on the last core:
  (consumer's result, CPU seconds the workers spent while it measured)."""
  port = _free_port()
  procs = [_start_server("dispatcher", port, [])]
  try:
    for i in range(workers):
      procs.append(_start_server("worker", _free_port(), [f"--dispatcher=localhost:{port}", "--host=localhost"],
                                 core=cores[i % len(cores)]))
    before = sum(_cpu_s(p.pid) for p in procs[1:])
    result = _run_worker("service", data_dir, None, [cores[-1]], batch_size, batches, image_size,
                         extra=[f"--data_service=localhost:{port}"])
    return result, sum(_cpu_s(p.pid) for p in procs[1:]) - before
  finally:
    _stop_servers(procs)


def compare_service(data_dir, cores, batch_size, batches, repeats, image_size=224, out=print):
  """Images/s a consumer receives from 1 and 2 service workers (each on its own core) vs the local fused pipeline
  on one core, and the service's CPU cost per image. Returns {label: [results]}.

  The workers' CPU is read from /proc over the consumer's whole run (warm-up included), so per image it counts the
  images the workers made ahead of the consumer too; the overhead figure is the difference from the local
  pipeline's CPU per image, workers and consumer together."""
  out(f"tf.data service vs local input: {batches} batches of {batch_size} at {image_size}px after a warm-up, "
      f"fused image op, {repeats} repeat(s); workers on core(s) {','.join(map(str, cores))} (one each, cycled), "
      f"the consumer on core {cores[-1]}")
  out(f"machine: {os.cpu_count()} cores, load average {_load():.2f} at start")
  results = {"local": [], 1: [], 2: []}
  for i in range(repeats):
    results["local"].append(_run_worker("fused", data_dir, None, [cores[-1]], batch_size, batches, image_size))
    for workers in (1, 2):
      result, worker_cpu = _through_service(data_dir, workers, cores, batch_size, batches, image_size)
      result["worker_cpu_s"] = worker_cpu
      results[workers].append(result)
    out(f"  repeat {i + 1}: images/s local {results['local'][-1]['images_per_s']:7.1f}, 1 worker "
        f"{results[1][-1]['images_per_s']:7.1f}, 2 workers {results[2][-1]['images_per_s']:7.1f} | load {_load():.2f}")
  local = statistics.median(r["images_per_s"] for r in results["local"])
  local_ms = 1e3 / statistics.median(r["images_per_cpu_s"] for r in results["local"])
  out(f"median images/s: local fused pipeline on 1 core {local:7.1f}")
  for workers in (1, 2):
    rate = statistics.median(r["images_per_s"] for r in results[workers])
    consumer_ms = 1e3 / statistics.median(r["images_per_cpu_s"] for r in results[workers])
    worker_ms = statistics.median(r["worker_cpu_s"] for r in results[workers]) * 1e3 / (
        (WARMUP_BATCHES + batches) * batch_size)
    out(f"median images/s: the service, {workers} worker(s)    {rate:7.1f} ({rate / local:.2f}x local)")
    out(f"  CPU ms per image: workers {worker_ms:.3f} + consumer {consumer_ms:.3f} vs local {local_ms:.3f}: "
        f"service overhead {worker_ms + consumer_ms - local_ms:+.3f} ms per image")
  return results


if __name__ == "__main__":
  sys.exit(worker(sys.argv[1:]))
