"""Reads the validation labels in the formats vendors ship, into {image stem: synset}.

--val_labels accepts (detected from the content):
  * LOC_val_solution.csv (Kaggle): "ImageId,PredictionString" rows; the first word of PredictionString is the synset.
  * the devkit's ILSVRC2012_validation_ground_truth.txt: one ILSVRC2012_ID (1..1000) per line in image order;
    needs --synset_map listing the synsets in devkit ID order (a text file, or the devkit's meta.mat).
  * one synset per line in image order (imagenet_2012_validation_synset_labels.txt of the reference).
  * "<image file name> <synset>" per line.
--synset_map accepts a text file with one synset per line, first word (so LOC_synset_mapping.txt's
"n01440764 tench, Tinca tinca" lines work), or meta.mat.
"""
import csv
import os
import re

_VAL_STEM = "ILSVRC2012_val_{:08d}"
_INT = re.compile(r"^\d+$")


class LabelError(Exception):
  """A labels or synset-map file is missing or cannot be parsed."""


def stem(filename):
  return os.path.splitext(os.path.basename(filename))[0]


def _lines(path, flag):
  if not os.path.isfile(path):
    raise LabelError(f"{flag}={path}: no such file")
  with open(path, encoding="utf-8-sig") as f:  # -sig: tolerate a BOM from spreadsheet exports
    return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def _read_meta_mat(path, flag):
  try:
    import scipy.io  # only this optional format needs scipy
  except ImportError:
    raise LabelError(f"{flag}={path}: reading meta.mat needs scipy; give a text file of synsets instead") from None
  synsets = scipy.io.loadmat(path, squeeze_me=True)["synsets"]
  leaves = sorted((int(s["ILSVRC2012_ID"]), str(s["WNID"])) for s in synsets if int(s["num_children"]) == 0)
  return [wnid for _, wnid in leaves]


def read_synset_map(path, flag="--synset_map"):
  """Synsets in file order (index 0 is devkit ILSVRC2012_ID 1)."""
  if path.endswith(".mat"):
    if not os.path.isfile(path):
      raise LabelError(f"{flag}={path}: no such file")
    synsets = _read_meta_mat(path, flag)
  else:
    synsets = [line.split()[0] for _, line in _lines(path, flag)]
  if len(set(synsets)) != len(synsets):
    raise LabelError(f"{flag}={path}: lists a synset more than once")
  return synsets


def _from_csv(path, flag):
  labels = {}
  with open(path, newline="", encoding="utf-8-sig") as f:
    for n, row in enumerate(csv.DictReader(f), 2):
      words = (row.get("PredictionString") or "").split()
      if not row.get("ImageId") or not words:
        raise LabelError(f"{flag}={path} line {n}: expected ImageId,PredictionString")
      labels[stem(row["ImageId"])] = words[0]
  return labels


def read_val_labels(path, synset_map=None, flag="--val_labels"):
  """Returns ({image stem: synset}, format name)."""
  lines = _lines(path, flag)
  if not lines:
    raise LabelError(f"{flag}={path}: file is empty")
  first = lines[0][1]
  if first.startswith("ImageId"):
    return _from_csv(path, flag), "loc_val_solution_csv"
  if _INT.match(first):
    if synset_map is None:
      raise LabelError(f"{flag}={path} holds devkit class IDs; pass --synset_map with the synsets in devkit ID order")
    if len(synset_map) == 1000 and synset_map == sorted(synset_map):
      # The devkit's IDs follow meta.mat (ID 1 is n02119789), not the sorted order of LOC_synset_mapping.txt;
      # a sorted map would silently give wrong validation labels.
      raise LabelError(f"--synset_map lists the synsets sorted, but {path} uses devkit IDs (meta.mat order); "
                       "pass the devkit's meta.mat or a synsets file in ILSVRC2012_ID order")
    labels = {}
    for index, (n, line) in enumerate(lines, 1):
      if not _INT.match(line) or not 1 <= int(line) <= len(synset_map):
        raise LabelError(f"{flag}={path} line {n}: expected a class ID 1..{len(synset_map)}, got {line!r}")
      labels[_VAL_STEM.format(index)] = synset_map[int(line) - 1]
    return labels, "devkit_ground_truth"
  if len(first.split()) == 1:
    labels = {}
    for index, (n, line) in enumerate(lines, 1):
      if len(line.split()) != 1:
        raise LabelError(f"{flag}={path} line {n}: expected one synset per line, got {line!r}")
      labels[_VAL_STEM.format(index)] = line
    return labels, "synset_per_line"
  labels = {}
  for n, line in lines:
    words = line.replace(",", " ").split()
    if len(words) != 2:
      raise LabelError(f"{flag}={path} line {n}: expected '<image file> <synset>', got {line!r}")
    labels[stem(words[0])] = words[1]
  return labels, "file_synset_pairs"
