"""Done markers, manifests and `verify` for the Wikipedia stages.

Each output file gets a done marker `<out>/.done/<name>.json` written (atomically) only after the output itself
was renamed into place. A rerun skips an output only if its marker exists, was made from the same input (size and
mtime, or failing that the same sha256) with the same settings, and the file still has the recorded size; anything
else is redone. The stage manifest `<out>/manifest-<stage>.json` gathers the markers with tool versions.
"""
import glob
import hashlib
import importlib.metadata
import os
import platform
import sys

import numpy

from tf_gp2bm.files import read_json, sha256_file, write_json_atomic
from tf_gp2bm.progress import Progress

DONE_DIR = ".done"


class StageError(Exception):
  """A missing or wrong input: the message says exactly what and where."""


def marker_path(out_dir, name):
  return os.path.join(out_dir, DONE_DIR, name + ".json")


def input_identity(path):
  st = os.stat(path)
  return {"path": os.path.abspath(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_done(out_dir, name, inputs, settings):
  """True when `<out_dir>/<name>` is complete for these inputs and settings (see module doc)."""
  marker = marker_path(out_dir, name)
  output = os.path.join(out_dir, name)
  if not (os.path.exists(marker) and os.path.exists(output)):
    return False
  try:
    done = read_json(marker, "done marker")
  except ValueError:
    return False
  if done.get("settings") != settings or os.path.getsize(output) != done.get("bytes"):
    return False
  recorded = done.get("inputs", [])
  if len(recorded) != len(inputs):
    return False
  for path, rec in zip(inputs, recorded):
    now = input_identity(path)
    if (now["bytes"], now["mtime_ns"]) == (rec.get("bytes"), rec.get("mtime_ns")):
      continue
    if now["bytes"] != rec.get("bytes") or sha256_file(path) != rec.get("sha256"):
      return False
  return True


def mark_done(out_dir, name, inputs, settings, stats):
  """Records a finished output. `stats` has at least bytes and sha256 of the output."""
  record = dict(stats)
  record.update(name=name, settings=settings,
                inputs=[dict(input_identity(p), sha256=sha256_file(p)) for p in inputs])
  os.makedirs(os.path.dirname(marker_path(out_dir, name)), exist_ok=True)  # names may hold folders (AA/wiki_00)
  write_json_atomic(marker_path(out_dir, name), record)
  return record


def read_marker(out_dir, name):
  return read_json(marker_path(out_dir, name), "done marker")


def remove_stale_temps(out_dir):
  """Deletes temp files (`<name>.tmp.<pid>`) left by killed runs: their writer process no longer exists.
  A concurrent run's temp files belong to a live process and are left alone."""
  removed = 0
  for path in glob.glob(os.path.join(glob.escape(out_dir), "**", "*.tmp.*"), recursive=True):
    pid = path.rsplit(".tmp.", 1)[1]
    if not pid.isdigit():
      continue
    try:
      os.kill(int(pid), 0)
    except ProcessLookupError:
      os.remove(path)
      removed += 1
    except PermissionError:  # alive, owned by someone else
      pass
  return removed


def code_version():
  """sha256 (first 16 hex) over this pipeline's sources (this package and the shared record writer), so a
  manifest says which code made the files."""
  here = os.path.dirname(os.path.abspath(__file__))
  shared = os.path.dirname(here)
  sources = [os.path.join(here, n) for n in os.listdir(here) if n.endswith(".py")]
  sources += [os.path.join(shared, n) for n in ("bert_records.py", "bert_manifest.py", "native.py", "_native.c")]
  digest = hashlib.sha256()
  for path in sorted(sources, key=lambda p: os.path.relpath(p, shared)):
    with open(path, "rb") as f:
      digest.update(os.path.relpath(path, shared).encode() + b"\0" + f.read())
  return digest.hexdigest()[:16]


def tool_versions():
  versions = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": numpy.__version__,
              "data_prep.wikipedia": code_version()}
  for package in ("nltk", "wikiextractor"):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # not installed: that stage was not run here
      pass
  return versions


def manifest_path(out_dir, stage):
  return os.path.join(out_dir, f"manifest-{stage}.json")


def write_manifest(out_dir, stage, settings, names, extra=None):
  """manifest-<stage>.json: per-file count/bytes/sha256 from the done markers, totals, versions."""
  files = {}
  for name in names:
    done = read_marker(out_dir, name)
    files[name] = {k: done[k] for k in ("count", "bytes", "sha256", "inputs") if k in done}
  manifest = {
      "stage": stage, "settings": settings, "tools": tool_versions(), "files": files,
      "total": {"files": len(files), "bytes": sum(f["bytes"] for f in files.values()),
                "count": sum(f.get("count", 0) for f in files.values())},
  }
  if extra:
    manifest.update(extra)
  write_json_atomic(manifest_path(out_dir, stage), manifest)
  return manifest


def verify(out_dir, progress_label="verify"):
  """Re-checks every file of every `<out_dir>/manifest-*.json` (bytes and sha256). Returns a list of problems."""
  manifests = sorted(glob.glob(os.path.join(out_dir, "manifest-*.json")))
  if not manifests:
    raise StageError(f"{out_dir}: no manifest-*.json to verify against")
  entries = {}
  for path in manifests:
    entries.update(read_json(path)["files"])
  progress = Progress(progress_label, total=len(entries), unit="files")
  problems = []
  for name, rec in sorted(entries.items()):
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
      problems.append(f"{path}: missing (manifest lists {rec['bytes']:,} bytes)")
    elif os.path.getsize(path) != rec["bytes"]:
      problems.append(f"{path}: {os.path.getsize(path):,} bytes, manifest says {rec['bytes']:,}")
    elif sha256_file(path) != rec["sha256"]:
      problems.append(f"{path}: sha256 differs from the manifest")
    progress.update()
  progress.finish()
  return problems
