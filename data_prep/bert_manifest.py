"""manifest.json for a folder of BERT pretraining records (format: tf_gp2bm.formats.bert_pretraining).

Every record is read and parsed once here, offline: the count, the token-id range against the vocab, the layout
(max_seq_length / max_predictions_per_seq), bytes and sha256 of each file. The trainer then trusts the manifest
and file sizes, and opens no record before the clock starts.
"""
import concurrent.futures
import os

import numpy as np

from tf_gp2bm.errors import InputError
from tf_gp2bm.files import read_json, sha256_file, write_json_atomic
from tf_gp2bm.formats import bert_pretraining as fmt

SCAN_BATCH = 1024


def scan_file(path, max_seq_length, max_predictions_per_seq):
  """Reads every record of one file: {records, bytes, sha256, max_token_id, masked_lm_weight_sum}.
  InputError naming the file for a cut, corrupt or differently shaped file."""
  import tensorflow as tf  # here, not at the top: the data_prep CLIs answer --help without TensorFlow
  spec = fmt.feature_spec(max_seq_length, max_predictions_per_seq)
  records, weight, top, low = 0, 0.0, 0, 0
  ds = tf.data.TFRecordDataset(path).batch(SCAN_BATCH).map(lambda r: tf.io.parse_example(r, spec))
  try:
    for batch in ds:
      ids = np.concatenate([batch["input_ids"].numpy().ravel(), batch["masked_lm_ids"].numpy().ravel()])
      records += int(batch["input_ids"].shape[0])
      weight += float(np.sum(batch["masked_lm_weights"].numpy(), dtype=np.float64))
      top, low = max(top, int(ids.max())), min(low, int(ids.min()))
  except tf.errors.DataLossError as e:
    raise InputError(f"{path}: cut or corrupt after {records:,} records ({e.message.splitlines()[0]})") from None
  except tf.errors.InvalidArgumentError as e:
    raise InputError(f"{path}: records do not parse as BERT pretraining examples of max_seq_length="
                     f"{max_seq_length}, max_predictions_per_seq={max_predictions_per_seq} "
                     f"({e.message.splitlines()[0]})") from None
  if low < 0:
    raise InputError(f"{path}: negative token id {low}")
  return {"records": records, "bytes": os.path.getsize(path), "sha256": sha256_file(path), "max_token_id": top,
          "masked_lm_weight_sum": weight}


def _existing(directory, settings):
  """Entries of a manifest already in the folder that stay valid next to this write (other splits, same sizes)."""
  path = os.path.join(directory, fmt.MANIFEST)
  if not os.path.exists(path):
    return {}
  try:
    old = read_json(path)
  except ValueError:
    return {}
  if old.get("format") != fmt.FORMAT or any(old.get(k) != v for k, v in settings.items()):
    return {}
  return old.get("files", {})


def write_manifest(directory, split, names, max_seq_length, max_predictions_per_seq, vocab_size, tool,
                   workers=None, progress=None):
  """Scans `names` (record files in `directory`) as `split` and writes manifest.json; entries of the other split
  already there stay when they were made with the same sizes. Raises InputError naming a bad file: unreadable,
  of another layout, empty, or holding a token id outside the vocab."""
  if split not in fmt.SPLITS:
    raise ValueError(f"split {split!r}, expected one of {fmt.SPLITS}")
  if not names:
    raise InputError(f"{directory}: no {split} record files to describe")
  settings = {"max_seq_length": max_seq_length, "max_predictions_per_seq": max_predictions_per_seq,
              "vocab_size": vocab_size}
  scanned = {}
  workers = max(1, min(workers or os.cpu_count() or 1, len(names)))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # TF parsing and hashing release the GIL
    jobs = {pool.submit(scan_file, os.path.join(directory, n), max_seq_length, max_predictions_per_seq): n
            for n in names}
    for job in concurrent.futures.as_completed(jobs):
      scanned[jobs[job]] = dict(job.result(), split=split)
      if progress is not None:
        progress.update()
  for name in sorted(scanned):
    path, entry = os.path.join(directory, name), scanned[name]
    if entry["records"] == 0:
      raise InputError(f"{path}: holds no records (an empty input part?); a rank given only such files would "
                       "wait forever for data")
    if entry["max_token_id"] >= vocab_size:
      raise InputError(f"{path}: token id {entry['max_token_id']} is outside the vocab of {vocab_size} entries "
                       "(records made with another vocab.txt?)")
  files = {n: e for n, e in _existing(directory, settings).items() if e.get("split") != split}
  files.update(scanned)
  splits = {}
  for name, entry in files.items():
    total = splits.setdefault(entry["split"], {"files": 0, "records": 0, "max_token_id": 0,
                                               "masked_lm_weight_sum": 0.0})
    total["files"] += 1
    total["records"] += entry["records"]
    total["max_token_id"] = max(total["max_token_id"], entry["max_token_id"])
    total["masked_lm_weight_sum"] += entry["masked_lm_weight_sum"]
  manifest = dict(settings, format=fmt.FORMAT, files=files, splits=splits, tool=tool)
  write_json_atomic(os.path.join(directory, fmt.MANIFEST), manifest)
  return manifest
