"""`restart`: gives an existing record set the restart markers `convert` writes by default, so the trainer's fused
image op can decode only each crop window's blocks (docs/performance.md). For records made with
--no_restart_markers, by an older `convert`, or elsewhere and described with `index`.

    python -m data_prep.imagenet restart --input=/data/imagenet_ref --out=/data/imagenet

Every train record keeps its features; only image/encoded is rewritten, losslessly (the same pixels, compared per
image; progressive and CMYK JPEGs are kept as they are). Validation shards are copied. Every JPEG must decode: one
that does not is refused, naming the shard, the record and the image; with --skip_bad (as `convert`'s) its record is
left out instead, counted and listed under "skipped" in the manifest. A finished shard's summary goes to
.restart_parts/ in --out, so a rerun skips it; the input's identity (its manifest's sha256) is recorded there too,
so a rerun resumes only from the same input. One `restart` at a time writes a folder (a lock). The manifest is the
input's with the new shard sizes and sha256 and the rewrite counts.
"""
import multiprocessing
import os
import shutil

from data_prep import output_lock
from tf_gp2bm import files
from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import imagenet as imagenet_records
from tf_gp2bm.progress import Progress

PARTS_DIR = ".restart_parts"
SOURCE = "source.json"  # in PARTS_DIR: which input the shards there were made from


class RestartError(Exception):
  """The input or output folder cannot be used; the message names it."""


def _part(out, name):
  return os.path.join(out, PARTS_DIR, name + ".json")


def _records(tf, source):
  """(index, tf.train.Example) of each record of `source`; a record that cannot be read is a RestartError."""
  index = 0
  try:
    for raw in tf.data.TFRecordDataset(source).as_numpy_iterator():
      yield index, tf.train.Example.FromString(raw)
      index += 1
  except tf.errors.OpError as e:
    raise RestartError(f"{source}: unreadable after {index} records ({e.message.splitlines()[0]})") from None


def _image_name(example):
  names = example.features.feature["image/filename"].bytes_list.value
  return names[0].decode(errors="replace") if names else "(no image/filename)"


def _bad_jpeg(tf, source, index, example, split, skip_bad):
  """None when the record's JPEG decodes; else, under --skip_bad, the manifest's "skipped" entry for it. A JPEG
  that does not decode would stop a training run later, so without --skip_bad it is refused here, named."""
  try:
    tf.io.decode_jpeg(example.features.feature["image/encoded"].bytes_list.value[0], channels=3)
    return None
  except tf.errors.OpError as e:
    reason = f"the JPEG does not decode ({e.message.splitlines()[0]})"
  if not skip_bad:
    raise RestartError(f"{source} record {index} (image {_image_name(example)}): {reason}; convert that image "
                       "again from its original, or pass --skip_bad to leave its record out (listed)")
  synsets = example.features.feature["image/class/synset"].bytes_list.value
  return {"file": _image_name(example), "synset": synsets[0].decode(errors="replace") if synsets else None,
          "split": split, "reason": reason, "shard": os.path.basename(source), "record": index}


def rewrite_shard(source, out, skip_bad=False):
  """Rewrites one train shard into `out`; returns its summary (also written to .restart_parts/)."""
  import tensorflow as tf  # in the workers only: --help needs no TensorFlow
  from tf_gp2bm.tasks.resnet import jpeg_op
  name = os.path.basename(source)
  counts, skipped = {"rewritten": 0, "kept": 0}, []
  with files.atomic_output(os.path.join(out, name)) as tmp:
    with tf.io.TFRecordWriter(tmp) as writer:
      for index, example in _records(tf, source):
        encoded = example.features.feature["image/encoded"].bytes_list
        jpeg, rewritten = jpeg_op.restart_every_mcu(encoded.value[0])
        if not rewritten:
          bad = _bad_jpeg(tf, source, index, example, "train", skip_bad)
          if bad:
            skipped.append(bad)
            continue
        encoded.value[0] = jpeg
        counts["rewritten" if rewritten else "kept"] += 1
        writer.write(example.SerializeToString(deterministic=True))
    summary = {"name": name, "num_examples": sum(counts.values()), "bytes": os.path.getsize(tmp),
               "sha256": files.sha256_file(tmp), "restart_markers": counts, "skipped": skipped}
  files.write_json_atomic(_part(out, name), summary)
  return summary


def copy_shard(source, out, skip_bad=False):
  """Copies one validation shard byte for byte, after checking that each of its JPEGs decodes; under --skip_bad a
  shard with records that do not decode is written again without them."""
  import tensorflow as tf
  skipped = [bad for index, example in _records(tf, source)
             if (bad := _bad_jpeg(tf, source, index, example, "validation", skip_bad))]
  name = os.path.basename(source)
  with files.atomic_output(os.path.join(out, name)) as tmp:
    if skipped:
      left_out = {s["record"] for s in skipped}
      with tf.io.TFRecordWriter(tmp) as writer:
        for index, example in _records(tf, source):
          if index not in left_out:
            writer.write(example.SerializeToString(deterministic=True))
    else:
      shutil.copyfile(source, tmp)
    summary = {"name": name, "num_examples": None, "bytes": os.path.getsize(tmp), "sha256": files.sha256_file(tmp),
               "skipped": skipped}
  files.write_json_atomic(_part(out, name), summary)
  return summary


def _check_folders(source, out):
  if not out:
    raise RestartError("--out is required: a new folder for the rewritten records")
  if os.path.lexists(source):  # a missing one is named by the manifest check below
    files.check_readable(source, "--input")
  files.check_out_apart(out, [("--input", source)])
  try:
    manifest = imagenet_records.read_manifest(source)
  except InputError as e:
    raise RestartError(f"--input={source}: {e}") from None
  for shards in manifest.splits.values():
    for shard in shards:
      files.check_readable(shard.path, "--input")
  if os.path.isdir(out) and os.listdir(out) and not os.path.isdir(os.path.join(out, PARTS_DIR)):
    raise RestartError(f"--out={out} is not empty and holds no {PARTS_DIR} (not a folder `restart` started); use "
                       "an empty folder")
  try:
    os.makedirs(os.path.join(out, PARTS_DIR), exist_ok=True)
  except OSError as e:
    raise RestartError(f"--out={out}: cannot write there ({e.strerror})") from None
  return manifest


def _lock(out):
  """The output folder's lock, held until the process ends: two restarts into one folder would mix shards."""
  return output_lock.hold(out, "python -m data_prep.imagenet restart", error=RestartError)


def _check_source(source, out):
  """Records which input the folder's shards come from, or refuses a resume from another input."""
  identity = {"input": os.path.realpath(source),
              "manifest_sha256": files.sha256_file(os.path.join(source, imagenet_records.MANIFEST))}
  path = os.path.join(out, PARTS_DIR, SOURCE)
  if os.path.exists(path):
    recorded = files.read_json(path, "restart source record")
    if recorded.get("manifest_sha256") != identity["manifest_sha256"]:
      raise RestartError(f"--out={out} holds a partial restart of another input ({recorded.get('input')}, manifest "
                         f"sha256 {recorded.get('manifest_sha256')}), not of --input={source} (manifest sha256 "
                         f"{identity['manifest_sha256']}); rerun with that --input, or use another --out")
  elif any(n.endswith(".json") for n in os.listdir(os.path.join(out, PARTS_DIR))):
    raise RestartError(f"--out={out} holds shards of a restart that did not record its input; use an empty --out")
  else:
    files.write_json_atomic(path, identity)


def _remove_temps(out):
  """A temporary file in a locked folder belongs to a killed run: none is a live writer's."""
  for folder in (out, os.path.join(out, PARTS_DIR)):
    for name in os.listdir(folder):
      if files.TMP_SUFFIX + "." in name:
        os.remove(os.path.join(folder, name))


def _load_rewriter():
  from tf_gp2bm.tasks.resnet import jpeg_op  # loads TensorFlow: only now, after the cheap checks
  try:
    jpeg_op.load()
  except jpeg_op.OpUnavailable as e:
    raise RestartError(f"the rewrite needs the fused image op, which is unavailable: {e}") from None


def _finished(out, shard, skip_bad):
  """The summary of a shard already written from this input, else None (also for one that left records out, when
  this run does not pass --skip_bad: rewritten, it is refused by name)."""
  name = os.path.basename(shard.path)
  part = _part(out, name)
  if not os.path.exists(part) or not os.path.exists(os.path.join(out, name)):
    return None
  summary = files.read_json(part, "shard summary")
  if summary.get("skipped") and not skip_bad:
    return None
  return summary if os.path.getsize(os.path.join(out, name)) == summary["bytes"] else None


def restart(source, out, workers=1, progress_stream=None, skip_bad=False):
  """Writes the rewritten record set to `out`; returns its manifest."""
  manifest = _check_folders(source, out)
  lock = _lock(out)
  try:
    _check_source(source, out)
    _remove_temps(out)
    _load_rewriter()
    return _restart(manifest, source, out, workers, progress_stream, skip_bad)
  finally:
    _remove_temps(out)  # a worker ended by an error elsewhere leaves its temporary file
    lock.release()


def _restart(manifest, source, out, workers, progress_stream, skip_bad):
  jobs, summaries = [], {}
  for split, shards in manifest.splits.items():
    for shard in shards:
      done = _finished(out, shard, skip_bad)
      if done:
        summaries[os.path.basename(shard.path)] = done
      else:
        jobs.append((rewrite_shard if split == "train" else copy_shard, shard))
  progress = Progress("restart", total=len(jobs), unit="shards", stream=progress_stream)
  if len(jobs) < sum(len(s) for s in manifest.splits.values()):
    print(f"[restart] resuming: {len(summaries)} shards already written", file=progress.stream, flush=True)
  if workers <= 1 or len(jobs) <= 1:
    for job, shard in jobs:
      summaries[os.path.basename(shard.path)] = job(shard.path, out, skip_bad)
      progress.update(1)
  else:
    ctx = multiprocessing.get_context("forkserver")  # workers forked from one process that loaded TensorFlow
    ctx.set_forkserver_preload([__name__])
    with ctx.Pool(min(workers, len(jobs))) as pool:
      pending = [pool.apply_async(job, (shard.path, out, skip_bad)) for job, shard in jobs]
      for result in pending:
        summary = result.get()  # a worker's error stops the run here; finished shards are kept
        summaries[summary["name"]] = summary
        progress.update(1)
  progress.finish()
  return _write_manifest(manifest, summaries, source, out, skip_bad)


def _write_manifest(manifest, summaries, source, out, skip_bad):
  raw = dict(manifest.raw)
  totals = {"rewritten": 0, "kept": 0}
  splits, skipped = {}, []
  class_counts = {split: dict(counts) for split, counts in raw.get("class_counts", {}).items()}
  for split, shards in manifest.splits.items():
    entries = {}
    for shard in shards:
      name = os.path.basename(shard.path)
      s = summaries[name]
      left_out = s.get("skipped", [])
      if split == "train":
        if s["num_examples"] + len(left_out) != shard.num_examples:
          raise RestartError(f"{shard.path}: {s['num_examples'] + len(left_out)} records, its manifest lists "
                             f"{shard.num_examples}")
        for key, n in s["restart_markers"].items():
          totals[key] += n
      for entry in left_out:
        if entry["synset"] in class_counts.get(split, {}):
          class_counts[split][entry["synset"]] -= 1
      skipped += left_out
      entries[name] = {**raw["splits"][split]["shards"][name], "bytes": s["bytes"], "sha256": s["sha256"],
                       "num_examples": shard.num_examples - len(left_out)}
    splits[split] = {**raw["splits"][split], "shards": entries,
                     "num_examples": sum(e["num_examples"] for e in entries.values())}
  options = {**raw.get("options", {}), "restart_markers": True}
  if skip_bad:
    options["skip_bad"] = True
  raw.update(splits=splits, restart_markers=totals, options=options, restarted_from=os.path.abspath(source),
             skipped=raw.get("skipped", []) + skipped, restart_skipped=len(skipped))
  if class_counts:
    raw["class_counts"] = class_counts
  files.write_json_atomic(os.path.join(out, imagenet_records.MANIFEST), raw)
  return raw
