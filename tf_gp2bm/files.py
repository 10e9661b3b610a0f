"""File helpers shared by the data_prep tools: atomic writes, checksums, manifests.

Every output is written under a temporary name and renamed only when complete, so a rerun can trust any file
that exists under its final name and redo the rest.
"""
import contextlib
import hashlib
import json
import os

TMP_SUFFIX = ".tmp"


def hash_file(path, algorithm, chunk=1 << 20):
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      h.update(block)
  return h.hexdigest()


def sha256_file(path, chunk=1 << 20):
  return hash_file(path, "sha256", chunk)


def md5_file(path, chunk=1 << 20):
  """md5 only where a published checksum is md5 (the MLPerf inputs)."""
  return hash_file(path, "md5", chunk)


@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary path next to `path`; renames it to `path` only if the block finishes."""
  tmp = f"{path}{TMP_SUFFIX}.{os.getpid()}"
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json_atomic(path, obj):
  with atomic_output(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")


def read_json(path, what="manifest"):
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: {what} not found") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: {what} is not valid JSON ({e})") from None
