"""`verify`: the phase-1 checkpoint files and bert_config.json against their published sizes and md5, once, offline.

Sizes are compared first (a cut download fails in a second), then every file with a published md5 is hashed
(~4 GB). Only a full pass writes checkpoint_manifest.json beside the files; a failure removes an older one, so
it never vouches for files that changed. A closed BERT run reads that manifest (and the file sizes) only.
--expected=FILE takes the table from a JSON file of the same shape ({file: {bytes, md5}}, null where nothing is
published), for checkpoints other than the published one.
"""
import json
import os
import time

from tf_gp2bm.errors import InputError
from tf_gp2bm.files import md5_file, write_json_atomic
from tf_gp2bm.formats.bert_checkpoint import CHECKPOINT_MANIFEST, MANIFEST_FORMAT, PUBLISHED_PHASE1

TOOL = {"name": "data_prep.bert_checkpoint verify", "version": 1}


def load_table(path):
  """{file: {bytes, md5}} from an --expected JSON file; InputError naming the file when it is malformed."""
  try:
    with open(path) as f:
      table = json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"--expected={path}: unreadable ({e})") from None
  if not isinstance(table, dict) or not table:
    raise InputError(f"--expected={path}: expected a JSON object {{file: {{bytes, md5}}}}")
  for name, entry in table.items():
    if not isinstance(entry, dict) or set(entry) != {"bytes", "md5"} or os.path.basename(name) != name:
      raise InputError(f"--expected={path}: entry {name!r} must be a file name with exactly bytes and md5 "
                       "(null where nothing is published)")
  return table


def verify(checkpoint_dir, table=None, table_source="published", log=print):
  """Checks every file of the table in checkpoint_dir; writes and returns the manifest, or raises InputError
  listing every problem (after removing a stale manifest)."""
  table = PUBLISHED_PHASE1 if table is None else table
  if not os.path.isdir(checkpoint_dir):
    raise InputError(f"--checkpoint_dir={checkpoint_dir}: no such directory")
  manifest_path = os.path.join(checkpoint_dir, CHECKPOINT_MANIFEST)
  problems, files = [], {}
  for name, want in sorted(table.items()):
    path = os.path.join(checkpoint_dir, name)
    if not os.path.isfile(path):
      problems.append(f"{path}: missing")
      continue
    size = os.path.getsize(path)
    if want["bytes"] is not None and size != want["bytes"]:
      problems.append(f"{path}: {size:,} bytes, expected {want['bytes']:,} (a cut or different file)")
    files[name] = {"bytes": size}
  for name, want in sorted(table.items()):
    if name not in files or want["md5"] is None or any(p.startswith(os.path.join(checkpoint_dir, name) + ":")
                                                       for p in problems):
      continue
    start = time.monotonic()
    digest = md5_file(os.path.join(checkpoint_dir, name))
    log(f"[verify] md5 {name}: {digest} ({files[name]['bytes'] / 1e6:,.1f} MB in {time.monotonic() - start:.1f}s)")
    files[name]["md5"] = digest
    if digest != want["md5"]:
      problems.append(f"{os.path.join(checkpoint_dir, name)}: md5 {digest}, expected {want['md5']}")
  if problems:
    if os.path.exists(manifest_path):
      os.remove(manifest_path)
    raise InputError(f"checkpoint in {checkpoint_dir} does not match the {table_source} table: " + "; ".join(problems))
  manifest = {"format": MANIFEST_FORMAT, "passed": True, "expected": table, "expected_source": table_source,
              "files": files, "tool": TOOL}
  write_json_atomic(manifest_path, manifest)
  log(f"[verify] {checkpoint_dir}: {len(files)} files match the {table_source} sizes and md5; wrote {manifest_path}")
  return manifest
