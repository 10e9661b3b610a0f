"""Decides what goes where: labels, validation checks, full-set counts and the image list of every shard.

The plan depends only on the inputs and flags (sorted listing, fixed-seed shuffle), so a rerun computes the
same shards, which is what makes resuming and byte-identical output possible.
"""
import collections
import hashlib
import json
import os
import random

from tf_gp2bm import files
from tf_gp2bm.formats import imagenet as imagenet_records
from data_prep.imagenet import labels, sources
from tf_gp2bm.progress import Progress
from tf_gp2bm.tasks.resnet.spec import IMAGENET_TRAIN as FULL_TRAIN, IMAGENET_VAL as FULL_VAL

FULL_CLASSES = 1000
DEFAULT_SEED = 20121  # any fixed value; recorded in the manifest
SPLITS = ("train", "validation")

# One shard's work. images: list of (SourceImage, label) in record order; plan_sha256 fingerprints that list, so
# a finished shard is only reused when it was made from the same plan.
ShardTask = collections.namedtuple("ShardTask", "split index num_shards images plan_sha256 restart_markers")


class PlanError(Exception):
  """The inputs disagree with each other or with the full ILSVRC-2012 set."""


def _first(items, n=3):
  items = sorted(items)
  return ", ".join(items[:n]) + (f" (and {len(items) - n} more)" if len(items) > n else "")


def _check_synset_map(synsets, synset_map, opts):
  unknown = set(synsets) - set(synset_map)
  if unknown:
    raise PlanError(f"--train={opts.train} has classes not in --synset_map={opts.synset_map}: {_first(unknown)}")
  missing = set(synset_map) - set(synsets)
  if missing and not opts.allow_partial:
    raise PlanError(f"--train={opts.train} lacks classes listed in --synset_map={opts.synset_map}: "
                    f"{_first(missing)}; pass --allow_partial to convert a subset")


def _label_validation(images, synsets, synset_map, opts):
  """Returns (images with their synset filled in, names dropped as of an unconverted class, labels info)."""
  by_stem, labels_info = None, None
  if opts.val_labels:
    by_stem, fmt = labels.read_val_labels(opts.val_labels, synset_map)
    labels_info = {"path": os.path.abspath(opts.val_labels), "format": fmt,
                   "sha256": files.sha256_file(opts.val_labels)}
  known = set(synsets)
  labelled, dropped, unlabelled = [], [], []
  for image in images:
    synset = image.synset
    if by_stem is not None:
      listed = by_stem.get(labels.stem(image.name))
      if listed is None:
        unlabelled.append(image.source)
        continue
      if synset and synset != listed:
        raise PlanError(f"validation image {image.source} is in folder {synset} but --val_labels="
                        f"{opts.val_labels} says {listed}")
      synset = listed
    elif synset is None:
      raise PlanError(f"--val={opts.val} holds images without class folders; pass --val_labels")
    if synset not in known:
      if not opts.allow_partial:
        raise PlanError(f"validation image {image.source} has class {synset}, which is not one of the "
                        f"{len(known)} classes in --train={opts.train}")
      dropped.append(image.name)
      continue
    labelled.append(image._replace(synset=synset))
  if unlabelled:
    raise PlanError(f"{len(unlabelled)} validation image(s) have no label in --val_labels={opts.val_labels}: "
                    f"{_first(unlabelled)}")
  if by_stem is not None:
    found = {labels.stem(im.name) for im in images}
    orphans = set(by_stem) - found
    if orphans and not opts.allow_partial:
      raise PlanError(f"--val_labels={opts.val_labels} by_stem {len(orphans)} image(s) missing from --val="
                      f"{opts.val}: {_first(orphans)}; pass --allow_partial to convert a subset")
    labels_info["labels_without_image"] = len(orphans)
  return labelled, sorted(dropped), labels_info


def _check_full_set(num_classes, num_train, num_val, opts):
  if opts.allow_partial:
    return
  for what, got, want, flag in (("classes", num_classes, FULL_CLASSES, opts.train),
                                ("train images", num_train, FULL_TRAIN, opts.train),
                                ("validation images", num_val, FULL_VAL, opts.val)):
    if got != want:
      raise PlanError(f"found {got:,} {what} in {flag}, the full ILSVRC-2012 set has {want:,}; "
                      "pass --allow_partial to convert a subset")


def _fingerprint(images, restart_markers):
  # --skip_bad is left out on purpose: a shard holding a bad image only ever finishes with --skip_bad, so any
  # finished shard has the same bytes either way, and a rerun with --skip_bad after a failure can reuse them.
  spec = [imagenet_records.FORMAT, [(im.name, im.synset, label, im.size) for im, label in images]]
  if restart_markers:
    spec.append("restart_markers")
  return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


def _shards(split, images, num_shards, restart_markers):
  n = len(images)
  tasks = []
  for i in range(num_shards):
    chunk = images[i * n // num_shards:(i + 1) * n // num_shards]
    tasks.append(ShardTask(split, i, num_shards, chunk, _fingerprint(chunk, restart_markers), restart_markers))
  return tasks


def make_plan(opts, progress_stream=None):
  """Lists and checks the inputs; returns (tasks, facts for the manifest)."""
  listing = Progress("list train", total=None if opts.allow_partial else FULL_CLASSES, unit="classes",
                     stream=progress_stream)
  by_synset, train_info = sources.list_train(opts.train, on_class=lambda _: listing.update())
  listing.finish()
  synsets = sorted(by_synset)
  synset_map = labels.read_synset_map(opts.synset_map) if opts.synset_map else None
  if synset_map is not None:
    _check_synset_map(synsets, synset_map, opts)
  val_images, val_info = sources.list_val(opts.val)
  val_images, dropped, labels_info = _label_validation(val_images, synsets, synset_map, opts)
  num_train = sum(len(v) for v in by_synset.values())
  _check_full_set(len(synsets), num_train, len(val_images), opts)

  label_of = {s: imagenet_records.REFERENCE_LABEL_OFFSET + i for i, s in enumerate(synsets)}
  train = [(im, label_of[im.synset]) for s in synsets for im in by_synset[s]]
  random.Random(opts.seed).shuffle(train)  # sorted listing + fixed seed: the same order on every run
  val = [(im, label_of[im.synset]) for im in val_images]
  # Restart markers pay off only where a crop window is decoded: the train images (eval decodes whole images).
  tasks = (_shards("train", train, opts.train_shards, opts.restart_markers)
           + _shards("validation", val, opts.val_shards, False))
  inputs = {"train": train_info, "validation": val_info}
  if labels_info:
    inputs["val_labels"] = labels_info
  if opts.synset_map:
    inputs["synset_map"] = {"path": os.path.abspath(opts.synset_map), "sha256": files.sha256_file(opts.synset_map)}
  full = (len(synsets), num_train, len(val)) == (FULL_CLASSES, FULL_TRAIN, FULL_VAL)
  facts = {"synsets": synsets, "sources": inputs, "dropped_validation": dropped, "partial": not full,
           "input_counts": {"train": num_train, "validation": len(val)}}
  return tasks, facts
