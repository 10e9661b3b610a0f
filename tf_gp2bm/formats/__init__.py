"""Record formats the tasks read: written by data_prep, defined here so the trainer never imports the tools."""
import json

from tf_gp2bm.errors import InputError


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
