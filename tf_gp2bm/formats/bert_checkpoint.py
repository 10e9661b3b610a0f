"""Identity of the phase-1 BERT checkpoint: the published sizes and md5, and the manifest that records a check.

`python -m data_prep.bert_checkpoint verify` hashes the TF1 checkpoint files and bert_config.json once, offline,
against PUBLISHED_PHASE1 and writes checkpoint_manifest.json beside them:
  format, passed, expected (the table checked against), expected_source, files {name: {bytes, md5}}, tool.
`convert` copies that manifest into its conversion.json (source_manifest) with its own output_files {name: bytes}.
`require_verified` reads only these JSON files and file sizes, so a closed run can call it during init (hashing
4 GB there would eat the init budget). No TensorFlow here.
"""
import json
import os

from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import check_listed_file

CHECKPOINT_MANIFEST = "checkpoint_manifest.json"
MANIFEST_FORMAT = "tf_gp2bm.bert_checkpoint/1"
CONVERSION = "conversion.json"  # written by `data_prep.bert_checkpoint convert` beside its output
# The phase-1 start point as MLCommons publishes it: {file: {bytes, md5}}; None where no figure is published.
PUBLISHED_PHASE1 = {
    "bert_config.json": {"bytes": 314, "md5": "7f59165e21b7d566db610ff6756c926b"},
    "model.ckpt-28252.data-00000-of-00001": {"bytes": 4_034_713_312, "md5": "50797acd537880bfb5a7ade80d976129"},
    "model.ckpt-28252.index": {"bytes": None, "md5": None},
}


def require_verified(path, expected=None):
  """Refuses (InputError naming the checkpoint) a phase-1 checkpoint that `python -m data_prep.bert_checkpoint
  verify` has not passed against `expected` (default: the published table), or whose files changed size since.
  `path` is --init_checkpoint: the TF1 prefix or its folder, or a folder written by `convert` from a verified
  source. Reads only JSON and file sizes."""
  expected = PUBLISHED_PHASE1 if expected is None else expected
  folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
  conversion = os.path.join(folder, CONVERSION)
  if os.path.exists(conversion):
    record = _read_json(conversion, path)
    manifest, where = record.get("source_manifest"), f"{conversion} (source_manifest)"
    _check_sizes(folder, record.get("output_files") or {}, conversion, path)
    if manifest is None:
      raise InputError(f"--init_checkpoint={path}: converted from an unverified checkpoint ({conversion} has no "
                       "source_manifest); run `python -m data_prep.bert_checkpoint verify` on the source, then "
                       "convert again")
  else:
    where = os.path.join(folder, CHECKPOINT_MANIFEST)
    if not os.path.exists(where):
      raise InputError(f"--init_checkpoint={path}: not verified ({where} not found); run `python -m "
                       f"data_prep.bert_checkpoint verify --checkpoint_dir={folder}` once (hashes ~4 GB)")
    manifest = _read_json(where, path)
    listed = manifest.get("files", {})
    if not os.path.isdir(path) and os.path.basename(path) + ".index" not in listed:
      raise InputError(f"--init_checkpoint={path}: {where} verified other files ({', '.join(sorted(listed))})")
    _check_sizes(folder, {n: f["bytes"] for n, f in listed.items()}, where, path)
  if manifest.get("format") != MANIFEST_FORMAT or manifest.get("passed") is not True:
    raise InputError(f"--init_checkpoint={path}: {where} does not record a passed verification")
  if manifest.get("expected") != expected:
    raise InputError(f"--init_checkpoint={path}: {where} was checked against another table "
                     f"({manifest.get('expected_source')}), not the "
                     + ("published phase-1 sizes and md5" if expected is PUBLISHED_PHASE1 else "table required here"))
  return where


def _read_json(manifest, path):
  try:
    with open(manifest) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"--init_checkpoint={path}: unreadable {manifest} ({e})") from None


def _check_sizes(folder, sizes, manifest, path):
  for name, size in sorted(sizes.items()):
    file = os.path.join(folder, name)
    try:
      check_listed_file(file, manifest, f"{size:,} bytes")
    except InputError as e:
      raise InputError(f"--init_checkpoint={path}: {e}") from None
    if os.path.getsize(file) != size:
      raise InputError(f"--init_checkpoint={path}: {file} is {os.path.getsize(file):,} bytes, {manifest} recorded "
                       f"{size:,}; verify it again")
