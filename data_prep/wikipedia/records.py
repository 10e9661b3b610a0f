"""`verify`'s record check: reads every record of a folder again and rewrites its manifest.json.

Which files are training and which eval records comes from the folder's manifest.json, else from the stage
manifests (tfrecords, eval, published-tfrecords), else from the names (part-* train, eval_10k eval) for records
made elsewhere. The vocab size is --vocab's, else the one manifest.json was checked against.
"""
import os
import re

from data_prep.wikipedia import published
from data_prep.wikipedia.manifest import StageError, manifest_path
from data_prep.wikipedia.tfrecords import EVAL_10K, describe_records
from data_prep.wikipedia.wordpiece import load_vocab
from tf_gp2bm.files import read_json
from tf_gp2bm.formats import bert_pretraining as fmt

_PART = re.compile(r"^part-\d{5}-of-\d{5}$")


def _from_stage_manifests(out_dir):
  """({split: [names]}, settings) from the stage manifests, or (None, None) when there are none."""
  splits, settings = {}, None
  for stage, split_of in (("tfrecords", lambda n: "train"), ("published-tfrecords", _split_of_name),
                          ("eval", lambda n: "eval" if n == EVAL_10K else None)):
    path = manifest_path(out_dir, stage)
    if not os.path.exists(path):
      continue
    stage_manifest = read_json(path)
    if stage == "published-tfrecords":
      settings = settings or published.OFFICIAL_SETTINGS
    else:
      settings = settings or stage_manifest.get("settings")
    for name in stage_manifest["files"]:
      split = split_of(name)
      if split:
        splits.setdefault(split, []).append(name)
  return (splits, settings) if splits else (None, None)


def _split_of_name(name):
  return "train" if _PART.match(name) else ("eval" if name == EVAL_10K else None)


def record_sets(out_dir):
  """({split: [names]}, {max_seq_length, max_predictions_per_seq} or None, vocab_size or None)."""
  path = os.path.join(out_dir, fmt.MANIFEST)
  if os.path.exists(path):
    current = read_json(path)
    splits = {}
    for name, entry in current.get("files", {}).items():
      splits.setdefault(entry.get("split"), []).append(name)
    return splits, current, current.get("vocab_size")
  splits, settings = _from_stage_manifests(out_dir)
  if splits is None:
    splits = {}
    for name in sorted(os.listdir(out_dir)):
      split = _split_of_name(name)
      if split and os.path.isfile(os.path.join(out_dir, name)):
        splits.setdefault(split, []).append(name)
  return splits, settings, None


def verify_records(out_dir, vocab_file=None, workers=None, max_seq_length=None, max_predictions_per_seq=None):
  """Reads every record again; returns the new manifest.json. InputError names a bad file (cut, another layout,
  no records, a token id outside the vocab); StageError when there is nothing to check or no vocab size."""
  splits, settings, vocab_size = record_sets(out_dir)
  splits = {s: sorted(n) for s, n in splits.items() if s in fmt.SPLITS and n}
  if not splits:
    raise StageError(f"{out_dir}: no BERT record files found (part-*, {EVAL_10K}) to verify")
  if vocab_file:
    vocab_size = len(load_vocab(vocab_file))
  if vocab_size is None:
    raise StageError(f"{out_dir}: no manifest.json says which vocab the records use; pass --vocab=vocab.txt")
  settings = dict(published.OFFICIAL_SETTINGS, **(settings or {}))
  if max_seq_length:
    settings["max_seq_length"] = max_seq_length
  if max_predictions_per_seq:
    settings["max_predictions_per_seq"] = max_predictions_per_seq
  manifest = None
  for split, names in sorted(splits.items()):
    manifest = describe_records(out_dir, split, names, settings, vocab_size, workers)
  return manifest
