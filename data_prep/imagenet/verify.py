"""`verify` re-checks converted records against manifest.json; `index` writes that manifest for records made
elsewhere (e.g. the reference's imagenet_to_gcs). Both read every record of every shard, in parallel over shards.
"""
import collections
import multiprocessing
import os

from tf_gp2bm import files
from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import imagenet as imagenet_records
from data_prep.imagenet import convert, plan

REQUIRED_KEYS = ("format", "label_offset", "num_classes", "splits", "class_counts", "synsets", "repairs",
                 "skipped", "tool", "sources")
QUICK_DECODE_EVERY = 50  # --quick decodes records 0, 50, 100, ... of each shard


class VerifyError(Exception):
  """The folder cannot be indexed (missing shards, inconsistent labels, wrong counts)."""


def scan_shard(path, decode_every=1):
  """Reads one shard: counts, checksum, {synset: labels}, and problems found in its records.

  decode_every: decode the JPEG of every n-th record (0: none) and compare it with image/height and width.
  """
  import tensorflow as tf  # in the scanning workers only: --help and the listing need no TensorFlow
  result = {"path": path, "num_examples": 0, "bytes": None, "sha256": None,
            "class_counts": collections.Counter(), "labels": collections.defaultdict(set), "problems": []}
  problems = result["problems"]
  try:
    result.update(bytes=os.path.getsize(path), sha256=files.sha256_file(path))
  except OSError as e:
    problems.append(f"{path}: cannot be read ({e.strerror})")
    return result
  try:
    for i, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
      result["num_examples"] += 1
      feature = tf.train.Example.FromString(raw).features.feature
      try:
        label = feature["image/class/label"].int64_list.value[0]
        encoded = feature["image/encoded"].bytes_list.value[0]
      except (KeyError, IndexError):
        problems.append(f"{path} record {i}: lacks image/encoded or image/class/label")
        continue
      synset_list = feature["image/class/synset"].bytes_list.value if "image/class/synset" in feature else []
      synset = synset_list[0].decode() if synset_list else None
      result["class_counts"][synset] += 1
      result["labels"][synset].add(label)
      if decode_every and i % decode_every == 0:
        try:
          shape = tf.io.decode_jpeg(encoded, channels=3).shape
        except tf.errors.OpError as e:
          names = feature["image/filename"].bytes_list.value if "image/filename" in feature else []
          image = names[0].decode(errors="replace") if names else "(no image/filename)"
          problems.append(f"{path} record {i} (image {image}): JPEG does not decode "
                          f"({e.message.splitlines()[0]})")
          continue
        stored = [feature[k].int64_list.value[0] for k in ("image/height", "image/width") if k in feature]
        # 0 means "not recorded" (data_prep.demo.imagenet writes that); the trainer reads the JPEG's own shape.
        if len(stored) == 2 and all(stored) and stored != list(shape[:2]):
          problems.append(f"{path} record {i}: image is {shape[0]}x{shape[1]}, record says "
                          f"{stored[0]}x{stored[1]}")
  except tf.errors.OpError as e:  # DataLossError on a corrupt record (bad CRC, cut-off file)
    problems.append(f"{path}: unreadable after {result['num_examples']} records ({e.message.splitlines()[0]})")
  return result


def _scan_all(paths, decode_every, workers):
  args = [(p, decode_every) for p in paths]
  if workers <= 1 or len(paths) <= 1:
    return [scan_shard(*a) for a in args]
  ctx = multiprocessing.get_context("forkserver")  # workers forked from one process that loaded TensorFlow
  ctx.set_forkserver_preload([__name__])
  with ctx.Pool(min(workers, len(paths))) as pool:
    return pool.starmap(scan_shard, args)


def _shard_files(directory):
  """{split: {num_shards: [names]}} of the shard files present."""
  found = collections.defaultdict(lambda: collections.defaultdict(list))
  for name in sorted(os.listdir(directory)):
    match = convert.SHARD_RE.match(name)
    if match:
      found[match.group(1)][int(match.group(3))].append(name)
  return found


def _label_problems(labels, synsets, offset, num_classes):
  problems = []
  rank = {s: i for i, s in enumerate(synsets)} if len(synsets) == num_classes else None
  for synset, seen in sorted(labels.items(), key=lambda kv: str(kv[0])):
    for label in sorted(seen):
      if not offset <= label < offset + num_classes:
        problems.append(f"label {label} (synset {synset}) outside label_offset..label_offset+num_classes-1 = "
                        f"{offset}..{offset + num_classes - 1}")
      elif rank is not None and synset is not None and rank.get(synset, -1) + offset != label:
        problems.append(f"synset {synset} has label {label}, expected {rank.get(synset, -1) + offset} from "
                        "its place in the sorted synsets")
  return problems


def _check_manifest(manifest, path):
  missing = [k for k in REQUIRED_KEYS if k not in manifest]
  if missing:
    return [f"{path} lacks keys: {', '.join(missing)}"]
  problems = []
  if manifest["format"] != imagenet_records.FORMAT:
    problems.append(f"{path}: format {manifest['format']!r}, expected {imagenet_records.FORMAT!r}")
  synsets = manifest["synsets"]
  if synsets != sorted(set(synsets)):
    problems.append(f"{path}: synsets are not sorted and unique")
  if len(synsets) > manifest["num_classes"]:
    problems.append(f"{path}: {len(synsets)} synsets but num_classes {manifest['num_classes']}")
  return problems


def _full_set_problems(manifest, path):
  """A manifest not marked partial describes the whole of ILSVRC-2012, less the images it lists as skipped."""
  if manifest.get("partial", True) or len(manifest["synsets"]) != plan.FULL_CLASSES:
    return []
  problems = []
  for split, full in (("train", plan.FULL_TRAIN), ("validation", plan.FULL_VAL)):
    expected = full - sum(1 for s in manifest["skipped"] if s.get("split") == split)
    got = manifest["splits"].get(split, {}).get("num_examples")
    if got != expected:
      problems.append(f"{path}: {split} has {got} examples; the full set less skipped images is {expected:,}")
  return problems


def verify(directory, quick=False, workers=1):
  """Returns a list of problems (empty: the folder matches its manifest)."""
  manifest_path = os.path.join(directory, imagenet_records.MANIFEST)
  try:
    files.check_readable(directory, "verify")
    files.check_readable(manifest_path, "verify")
  except InputError as e:
    raise VerifyError(str(e)) from None
  manifest = files.read_json(manifest_path)
  problems = _check_manifest(manifest, manifest_path)
  if problems:
    return problems
  present = _shard_files(directory)
  to_scan, unscanned = {}, False
  for split in plan.SPLITS:
    info = manifest["splits"].get(split)
    if info is None:
      problems.append(f"{manifest_path}: no {split} split")
      continue
    expected = [imagenet_records.shard_name(split, i, info["num_shards"]) for i in range(info["num_shards"])]
    if sorted(info["shards"]) != expected:
      problems.append(f"{manifest_path}: {split} shards listed do not match num_shards={info['num_shards']}")
    if sum(s["num_examples"] for s in info["shards"].values()) != info["num_examples"]:
      problems.append(f"{manifest_path}: {split} num_examples differs from the sum over its shards")
    on_disk = {n for names in present[split].values() for n in names}
    problems += [f"missing shard {os.path.join(directory, n)}" for n in sorted(set(info["shards"]) - on_disk)]
    problems += [f"unexpected file {os.path.join(directory, n)} (not in the manifest)"
                 for n in sorted(on_disk - set(info["shards"]))]
    for name in sorted(set(info["shards"]) & on_disk):
      try:
        files.check_readable(os.path.join(directory, name), "verify")
      except InputError as e:  # a symlink loop, an unreadable file: named, never scanned
        problems.append(f"{e} (the manifest lists it)")
        unscanned = True
        continue
      to_scan[os.path.join(directory, name)] = (split, name)
  decode_every = QUICK_DECODE_EVERY if quick else 1
  counts = {split: collections.Counter() for split in plan.SPLITS}
  labels = collections.defaultdict(set)
  for result in _scan_all(sorted(to_scan), decode_every, workers):
    split, name = to_scan[result["path"]]
    entry = manifest["splits"][split]["shards"][name]
    problems += result["problems"]
    if result["sha256"] is None:
      unscanned = True
      continue
    if result["sha256"] != entry["sha256"]:
      problems.append(f"checksum differs: {result['path']} has sha256 {result['sha256']}, manifest says "
                      f"{entry['sha256']}")
    if result["num_examples"] != entry["num_examples"]:
      problems.append(f"{result['path']}: {result['num_examples']} records, manifest says {entry['num_examples']}")
    counts[split].update(result["class_counts"])
    for synset, seen in result["labels"].items():
      labels[synset] |= seen
  problems += _label_problems(labels, manifest["synsets"], manifest["label_offset"], manifest["num_classes"])
  problems += _full_set_problems(manifest, manifest_path)
  if not unscanned and not any("missing shard" in p or "unreadable" in p for p in problems):
    for split, counted in counts.items():
      listed = {s: n for s, n in manifest["class_counts"].get(split, {}).items() if n}
      if dict(counted) != listed:
        problems.append(f"{manifest_path}: class_counts[{split}] differ from the records")
  return problems


def index(directory, label_offset, num_classes, allow_partial=False, workers=1):
  """Scans records made elsewhere and writes manifest.json describing them; returns the manifest."""
  if not os.path.isdir(directory):
    raise VerifyError(f"{directory}: no such directory")
  present = _shard_files(directory)
  paths = []
  for split in plan.SPLITS:
    if len(present[split]) != 1:
      raise VerifyError(f"{directory}: expected {split}-NNNNN-of-MMMMM files of one shard count, found "
                        f"counts {sorted(present[split]) or 'none'}")
    (num_shards, names), = present[split].items()
    missing = sorted(set(imagenet_records.shard_name(split, i, num_shards) for i in range(num_shards)) - set(names))
    if missing:
      raise VerifyError(f"{directory}: {len(missing)} {split} shard(s) missing, e.g. {missing[0]}")
    paths += [os.path.join(directory, n) for n in names]
  results = {os.path.basename(r["path"]): r for r in _scan_all(paths, 0, workers)}
  problems = [p for r in results.values() for p in r["problems"]]
  labels = collections.defaultdict(set)
  for r in results.values():
    for synset, seen in r["labels"].items():
      labels[synset] |= seen
  if None in labels:
    problems.append("records lack image/class/synset, so the manifest cannot name the classes")
  synsets = sorted(s for s in labels if s is not None)
  if len(synsets) != num_classes and not allow_partial:
    problems.append(f"found {len(synsets)} synsets, --num_classes={num_classes}; pass --allow_partial for a subset")
  problems += _label_problems(labels, synsets, label_offset, num_classes)
  problems += [f"synset {s} has several labels {sorted(v)}" for s, v in sorted(labels.items()) if len(v) > 1]
  if problems:
    raise VerifyError("; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))

  splits, class_counts = {}, {}
  for split in plan.SPLITS:
    (num_shards, names), = present[split].items()
    shards = {n: {"num_examples": results[n]["num_examples"], "sha256": results[n]["sha256"],
                  "bytes": results[n]["bytes"]} for n in names}
    splits[split] = {"num_examples": sum(s["num_examples"] for s in shards.values()), "num_shards": num_shards,
                     "shards": shards}
    counts = dict.fromkeys(synsets, 0)
    for n in names:
      for synset, c in results[n]["class_counts"].items():
        counts[synset] += c
    class_counts[split] = counts
  if not allow_partial:
    for split, want in (("train", plan.FULL_TRAIN), ("validation", plan.FULL_VAL)):
      if splits[split]["num_examples"] != want:
        raise VerifyError(f"{directory}: {splits[split]['num_examples']:,} {split} records, the full ILSVRC-2012 "
                          f"set has {want:,}; pass --allow_partial for a subset")
  manifest = {
      "format": imagenet_records.FORMAT, "label_offset": label_offset, "num_classes": num_classes,
      "synsets": synsets, "splits": splits, "class_counts": class_counts, "repairs": [], "skipped": [],
      "partial": (len(synsets), splits["train"]["num_examples"], splits["validation"]["num_examples"])
                 != (plan.FULL_CLASSES, plan.FULL_TRAIN, plan.FULL_VAL),
      "indexed": True, "tool": convert.TOOL,
      "sources": {"records": {"path": os.path.abspath(directory),
                              "bytes": sum(r["bytes"] for r in results.values())}},
  }
  files.write_json_atomic(os.path.join(directory, imagenet_records.MANIFEST), manifest)
  return manifest
