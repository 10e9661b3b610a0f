"""Record formats the tasks read: written by data_prep, defined here so the trainer never imports the tools."""
import json
import os

from tf_gp2bm.errors import InputError
from tf_gp2bm.files import check_readable


def load_manifest(path, expected_format, how_to_make):
  """A manifest's JSON, refused with an InputError naming `path` when it is missing, unreadable or of another
  format; `how_to_make` says which command writes one."""
  try:
    with open(path) as f:
      raw = json.load(f)
  except FileNotFoundError:
    raise InputError(f"{path}: manifest not found; {how_to_make}") from None
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: unreadable manifest ({e})") from None
  if not isinstance(raw, dict) or raw.get("format") != expected_format:
    found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
    raise InputError(f"{path}: format {found!r}, expected {expected_format!r}")
  return raw


def check_listed_file(file_path, manifest_path, listing):
  """A file a manifest lists is there and readable: a missing file, a symlink loop, a dangling link, a file without
  read permission or a folder is an InputError naming the file and which of these it is. `listing` says what the
  manifest records for it (e.g. "1,024 records")."""
  if not os.path.lexists(file_path):
    raise InputError(f"{file_path}: missing; {manifest_path} lists it ({listing})")
  check_readable(file_path, manifest_path)
  if os.path.isdir(file_path):
    raise InputError(f"{file_path}: a folder, not a file; {manifest_path} lists it ({listing})")
