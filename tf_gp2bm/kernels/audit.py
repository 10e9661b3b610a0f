"""Which files make up a kernel module, and one hash over them (no TensorFlow: the driver uses this too).

A run records the module, the hot spots it replaced and this hash (run.json, mllog); the driver copies the same
files into the submission's source tree, so a reviewer can rebuild exactly what ran.
"""
import hashlib
import importlib.util
import os

from tf_gp2bm.errors import InputError
from tf_gp2bm.files import sha256_file

_SKIP_DIRS = {"__pycache__", ".git", "build"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".o")  # built artefacts are rebuilt from the sources that are copied


def _spec(name):
  try:
    return importlib.util.find_spec(name)
  except (ImportError, ValueError) as e:  # a parent package that is missing or fails to import
    raise InputError(f"--kernels={name}: cannot locate the module ({type(e).__name__}: {e})") from None


def module_files(name):
  """{path relative to the import root (e.g. 'acme/kernels.py'): absolute path} for kernel module `name`.

  A package brings every source file under its directory; a plain module its file. The __init__.py of each
  enclosing package comes along so the copy imports under the same name.
  """
  spec = _spec(name)
  if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
    raise InputError(f"--kernels={name}: no importable module of that name (check PYTHONPATH)")
  parts = name.split(".")
  files = {}
  for i in range(1, len(parts)):  # enclosing packages
    parent = _spec(".".join(parts[:i]))
    if parent is not None and parent.origin and parent.origin.endswith("__init__.py"):
      files["/".join(parts[:i]) + "/__init__.py"] = os.path.abspath(parent.origin)
  prefix = "/".join(parts)
  if spec.submodule_search_locations:
    for location in spec.submodule_search_locations:
      for directory, subdirs, names in os.walk(location):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and not d.startswith("."))
        for f in sorted(names):
          if f.startswith(".") or f.endswith(_SKIP_SUFFIXES):
            continue
          path = os.path.join(directory, f)
          rel = os.path.relpath(path, location).replace(os.sep, "/")
          files[f"{prefix}/{rel}"] = os.path.abspath(path)
  else:
    files[prefix + os.path.splitext(spec.origin)[1]] = os.path.abspath(spec.origin)
  return dict(sorted(files.items()))


def files_sha256(files):
  """One sha256 over {relative path: absolute path}: each relative path with its file's sha256, in path order."""
  digest = hashlib.sha256()
  for rel, path in sorted(files.items()):
    digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
  return digest.hexdigest()
