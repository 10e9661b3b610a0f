"""`convert`: writes the shards of a plan in parallel, resumably, then the manifest.

A shard is written as `<name>.tmp.<pid>`, its summary (count, sha256, repairs) goes to `.imagenet_parts/<name>.json`,
and only then is the shard renamed to its final name. So a shard under its final name with a summary made from
the same plan is complete, and a rerun skips it; anything else is rewritten, to the same bytes.
"""
import collections
import contextlib
import errno
import multiprocessing
import os
import re
import tempfile

from tf_gp2bm import files
from tf_gp2bm.formats import imagenet as imagenet_records
from data_prep import output_lock
from data_prep.imagenet import images, plan, sources
from tf_gp2bm.progress import Progress

TOOL = {"name": "data_prep.imagenet", "version": "1.0"}
PARTS_DIR = ".imagenet_parts"
SHARD_RE = re.compile(r"^(train|validation)-(\d{5})-of-(\d{5})$")
STRAY_RE = re.compile(r"^(train|validation)-\d{5}-of-\d{5}" + re.escape(files.TMP_SUFFIX) + r"\.\d+$")


class ConvertError(Exception):
  """A problem the user must fix (bad image, full disk, an output dir of another layout); the message says where."""


# -- output directory ---------------------------------------------------------------------------------------------

def check_inputs_and_out(opts):
  """Every input given is readable (a symlink loop or an unreadable file is named, never skipped), and --out is
  apart from all of them: not one of them, not inside one, holding none."""
  inputs = [("--train", opts.train), ("--val", opts.val), ("--val_labels", opts.val_labels),
            ("--synset_map", opts.synset_map)]
  for flag, path in inputs:
    if path and os.path.lexists(path):
      files.check_readable(path, flag)
  files.check_out_apart(opts.out, inputs)


def lock_out_dir(out):
  """One `convert` at a time per output folder (held until the process ends)."""
  return output_lock.hold(out, "python -m data_prep.imagenet convert", error=ConvertError)


def check_out_dir(out, train_shards, val_shards):
  """Refuses an --out that cannot be written or holds another layout, before the slow listing of the inputs."""
  if os.path.exists(out):
    if not os.path.isdir(out):
      raise ConvertError(f"--out={out} is not a directory")
    _check_layout(out, train_shards, val_shards)
  existing = os.path.abspath(out)  # out itself, or the folder it would be created in (nothing is created here)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConvertError(f"--out={out}: cannot write there ({existing} is a file)")
  try:
    with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
      pass
  except OSError as e:
    raise ConvertError(f"--out={out}: cannot write there ({e.strerror or e} in {existing})") from None


def _check_layout(out, train_shards, val_shards):
  manifest_path = os.path.join(out, imagenet_records.MANIFEST)
  if os.path.exists(manifest_path):
    fmt = files.read_json(manifest_path).get("format")
    if fmt != imagenet_records.FORMAT:
      raise ConvertError(f"{manifest_path} describes records of format {fmt!r}, this tool writes "
                         f"{imagenet_records.FORMAT!r}; use an empty --out")
  wanted = {"train": train_shards, "validation": val_shards}
  flag = {"train": "--train_shards", "validation": "--val_shards"}
  for name in sorted(os.listdir(out)):
    match = SHARD_RE.match(name)
    if match and int(match.group(3)) != wanted[match.group(1)]:
      raise ConvertError(f"--out={out} holds {name}, but {flag[match.group(1)]}={wanted[match.group(1)]}; "
                         "use an empty --out or the shard counts it was made with")


def prepare_out_dir(out):
  """Creates the dirs and removes the temp files an interrupted (killed) run left behind."""
  parts = os.path.join(out, PARTS_DIR)
  os.makedirs(parts, exist_ok=True)
  _remove_temps(out)
  for name in os.listdir(parts):
    if files.TMP_SUFFIX in name:
      os.remove(os.path.join(parts, name))


def _part_path(out, name):
  return os.path.join(out, PARTS_DIR, name + ".json")


def finished_summary(out, task):
  """The summary of a finished shard made from this task's plan, or None if it must be (re)written."""
  name = imagenet_records.shard_name(task.split, task.index, task.num_shards)
  path, part = os.path.join(out, name), _part_path(out, name)
  if not os.path.exists(part):
    if os.path.exists(path) and not os.listdir(os.path.dirname(part)):
      raise ConvertError(f"--out={out} holds {name} not written by `convert` (no {PARTS_DIR}); use an empty "
                         "--out, or `index` to describe existing records")
    return None
  summary = files.read_json(part, "shard summary")
  if summary.get("plan_sha256") != task.plan_sha256:
    raise ConvertError(f"{path} was made from other inputs or flags (--seed, shard counts, labels); "
                       "use an empty --out or delete that dir's shards")
  if not os.path.exists(path) or os.path.getsize(path) != summary["bytes"]:
    return None
  return summary


# -- worker side --------------------------------------------------------------------------------------------------

_worker = {}


def init_worker(out, skip_bad, counter):
  _worker.update(out=out, skip_bad=skip_bad, counter=counter, open_files={})


def _disk_full(e):
  import tensorflow as tf  # already loaded by write_shard
  if isinstance(e, OSError):
    return e.errno == errno.ENOSPC
  return isinstance(e, tf.errors.OpError) and "No space left" in str(e)


def _records(task, summary, restart_every_mcu):
  """Yields serialized examples of the task, filling the summary's counts, repairs and skips."""
  for image, label in task.images:
    data = sources.read_span(image, _worker["open_files"])
    try:
      jpeg, height, width, repair = images.prepare(data)
    except images.BadImage as e:
      if not _worker["skip_bad"]:
        raise ConvertError(f"unreadable image {image.source}: {e}; pass --skip_bad to skip and list it") from None
      summary["skipped"].append({"file": image.name, "synset": image.synset, "split": task.split, "reason": str(e)})
      continue
    if repair:
      summary["repairs"].append({"file": image.name, "synset": image.synset, "split": task.split, "what": repair})
    if task.restart_markers:
      jpeg, rewritten = restart_every_mcu(jpeg)
      summary["restart_markers"]["rewritten" if rewritten else "kept"] += 1
    summary["class_counts"][image.synset] = summary["class_counts"].get(image.synset, 0) + 1
    yield imagenet_records.make_example(jpeg, label, image.synset, height, width, image.name)


def write_shard(task):
  """Writes one shard and its summary; returns the summary."""
  import tensorflow as tf  # in the shard-writing workers only: --help and the listing need no TensorFlow
  from tf_gp2bm.tasks.resnet import jpeg_op  # builds on TensorFlow too
  out, counter = _worker["out"], _worker["counter"]
  name = imagenet_records.shard_name(task.split, task.index, task.num_shards)
  path = os.path.join(out, name)
  summary = {"name": name, "plan_sha256": task.plan_sha256, "class_counts": {}, "repairs": [], "skipped": []}
  if task.restart_markers:
    summary["restart_markers"] = {"rewritten": 0, "kept": 0}
  pending = 0
  try:
    with files.atomic_output(path) as tmp:
      with tf.io.TFRecordWriter(tmp) as writer:
        for record in _records(task, summary, jpeg_op.restart_every_mcu):
          writer.write(record)
          pending += 1
          if pending == 64:  # a shared counter is cheap to bump, but not per image
            with counter.get_lock():
              counter.value += pending
            pending = 0
      summary.update(num_examples=sum(summary["class_counts"].values()), bytes=os.path.getsize(tmp),
                     sha256=files.sha256_file(tmp))
      files.write_json_atomic(_part_path(out, name), summary)
  except (OSError, tf.errors.OpError) as e:
    if _disk_full(e):
      raise ConvertError(f"disk full while writing {path} (free space in {out} and rerun; finished shards "
                         "are kept)") from None
    raise
  with counter.get_lock():
    counter.value += pending + len(summary["skipped"])  # progress counts images handled, skipped ones too
  return summary


# -- parent side --------------------------------------------------------------------------------------------------

class _LocalCounter:
  """Same interface as multiprocessing.Value for the in-process (--workers=1) path."""

  def __init__(self):
    self.value = 0

  def get_lock(self):
    return contextlib.nullcontext()


def _remove_temps(out):
  for name in os.listdir(out):
    if STRAY_RE.match(name):
      os.remove(os.path.join(out, name))


def start_pool(workers, out, skip_bad):
  """(pool, shared image counter) of worker processes writing into `out`."""
  # forkserver: a clean server process imports TensorFlow once and forks workers from it, so N workers share
  # its memory and start in milliseconds. Not plain fork: this process may have TF thread pools running.
  ctx = multiprocessing.get_context("forkserver")
  ctx.set_forkserver_preload([__name__])
  counter = ctx.Value("q", 0)
  return ctx.Pool(workers, initializer=init_worker, initargs=(out, skip_bad, counter)), counter


def run_tasks(tasks, out, skip_bad, workers, progress, pool=None):
  """Writes the tasks' shards with `workers` processes (in this process if 1); returns their summaries.

  pool: an already started (pool, counter) from start_pool, which the caller keeps and closes (the bench reuses
  a warmed-up one).
  """
  if workers <= 1:
    counter = _LocalCounter()
    init_worker(out, skip_bad, counter)
    summaries = []
    try:
      for task in tasks:
        summaries.append(write_shard(task))
        progress.update(counter.value - progress.done)
    finally:
      for fd in _worker["open_files"].values():  # worker processes close theirs by exiting
        os.close(fd)
      _worker["open_files"].clear()
    return summaries
  own_pool = pool is None
  pool, counter = start_pool(workers, out, skip_bad) if own_pool else pool
  try:
    pending = [pool.apply_async(write_shard, (task,)) for task in tasks]
    for waiting in pending:
      while not waiting.ready():
        waiting.wait(0.5)
        for result in pending:
          if result.ready() and not result.successful():
            result.get()  # re-raises a worker's error here, stopping the run at the first bad shard
        progress.update(counter.value - progress.done)
    progress.update(counter.value - progress.done)
    return [result.get() for result in pending]
  finally:
    if own_pool:
      pool.terminate()
      pool.join()
      _remove_temps(out)  # a terminated worker cannot clean up after itself


def build_manifest(tasks, summaries, facts, opts):
  by_name = {s["name"]: s for s in summaries}
  synsets = facts["synsets"]
  splits, class_counts, repairs, skipped = {}, {}, [], []
  restarts = {"rewritten": 0, "kept": 0}
  for split in plan.SPLITS:
    shards = collections.OrderedDict()
    counts = dict.fromkeys(synsets, 0)
    for task in (t for t in tasks if t.split == split):
      s = by_name[imagenet_records.shard_name(split, task.index, task.num_shards)]
      shards[s["name"]] = {"num_examples": s["num_examples"], "sha256": s["sha256"], "bytes": s["bytes"]}
      for synset, n in s["class_counts"].items():
        counts[synset] += n
      repairs += s["repairs"]
      skipped += s["skipped"]
      for key, n in s.get("restart_markers", {}).items():
        restarts[key] += n
    splits[split] = {"num_examples": sum(v["num_examples"] for v in shards.values()), "num_shards": len(shards),
                     "shards": shards}
    class_counts[split] = counts
  return {
      "format": imagenet_records.FORMAT, "label_offset": imagenet_records.REFERENCE_LABEL_OFFSET,
      "num_classes": len(synsets), "synsets": synsets, "splits": splits, "class_counts": class_counts,
      "repairs": repairs, "skipped": skipped, "dropped_validation": facts["dropped_validation"],
      "input_counts": facts["input_counts"], "partial": facts["partial"],
      "options": {"seed": opts.seed, "allow_partial": bool(opts.allow_partial), "skip_bad": bool(opts.skip_bad),
                  "restart_markers": bool(opts.restart_markers)},
      "tool": TOOL, "sources": facts["sources"],
      # Train JPEGs rewritten losslessly with a restart marker per MCU (the same pixels, checked per image);
      # "kept" ones (progressive, CMYK) are stored as they came.
      "restart_markers": restarts if opts.restart_markers else None,
  }


def _check_restart_rewriter():
  """Before any work: the restart-marker rewrite needs the fused image op built and self-checked."""
  from tf_gp2bm.tasks.resnet import jpeg_op  # loads TensorFlow: only when converting
  try:
    jpeg_op.load()
  except jpeg_op.OpUnavailable as e:
    raise ConvertError(f"restart markers need the fused image op, which is unavailable: {e}; or pass "
                       "--no_restart_markers (the records then decode at the reference's speed)") from None


def convert(opts, progress_stream=None):
  """Runs the whole conversion; returns the manifest. Raises ConvertError/PlanError/... with a clear message."""
  for flag, value in (("--train_shards", opts.train_shards), ("--val_shards", opts.val_shards),
                      ("--workers", opts.workers)):
    if value < 1:
      raise ConvertError(f"{flag}={value}: must be at least 1")
  check_inputs_and_out(opts)
  check_out_dir(opts.out, opts.train_shards, opts.val_shards)
  if opts.restart_markers:
    _check_restart_rewriter()
  tasks, facts = plan.make_plan(opts, progress_stream)
  lock = lock_out_dir(opts.out)
  try:
    prepare_out_dir(opts.out)  # under the lock: any temporary file there is a killed run's
    return _convert(opts, tasks, facts, progress_stream)
  finally:
    lock.release()


def _convert(opts, tasks, facts, progress_stream):
  summaries, todo = [], []
  for task in tasks:
    summary = finished_summary(opts.out, task)
    if summary:
      summaries.append(summary)
    else:
      todo.append(task)
  manifest_path = os.path.join(opts.out, imagenet_records.MANIFEST)
  if todo and os.path.exists(manifest_path):
    os.remove(manifest_path)  # the manifest vouches for complete output only; it comes back at the end
  progress = Progress("convert", total=sum(len(t.images) for t in todo), unit="images", stream=progress_stream)
  if len(tasks) > len(todo):
    print(f"[convert] resuming: {len(tasks) - len(todo)} of {len(tasks)} shards already complete",
          file=progress.stream, flush=True)
  summaries += run_tasks(todo, opts.out, opts.skip_bad, min(opts.workers, max(1, len(todo))), progress)
  progress.finish()
  manifest = build_manifest(tasks, summaries, facts, opts)
  try:
    files.write_json_atomic(manifest_path, manifest)
  except OSError as e:
    if e.errno == errno.ENOSPC:
      raise ConvertError(f"disk full while writing {manifest_path}; free space and rerun") from None
    raise
  return manifest
