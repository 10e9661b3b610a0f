"""File helpers shared by the data_prep tools: atomic writes, checksums, manifests.

Every output is written under a temporary name and renamed only when complete, so a rerun can trust any file
that exists under its final name and redo the rest.
"""
import contextlib
import hashlib
import json
import os
import stat

from tf_gp2bm.errors import InputError

TMP_SUFFIX = ".tmp"


def repo_root():
  """The folder that holds the tf_gp2bm package: the repository in a checkout (flags/, data_prep/,
  run_benchmark.sh), site-packages in an install. Child processes start here, so `python -m tf_gp2bm...` and
  `python -m data_prep...` import this copy whatever the caller's working directory."""
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flags_dir():
  """The shipped flagfiles, <task>/<system>.flags: the repository's flags/ in a checkout, the copy installed as
  package data (tf_gp2bm/flags) in an install."""
  checkout = os.path.join(repo_root(), "flags")
  if os.path.isdir(checkout):
    return checkout
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "flags")


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
  except OSError as e:
    if e.filename is None:  # a write or close that hit a full disk: say which file it was for
      raise OSError(e.errno, e.strerror, path) from e
    raise
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


# -- Inputs a tool reads and the folder it writes: readable, and never the same place ----------------------------
# Compared by (device, inode), not by path: a symlink, a bind mount or `..` in a path all name the same folder.


def _identity(path):
  st = os.stat(path)
  return st.st_dev, st.st_ino


def _folders_up(path):
  """(device, inode) of `path`'s folder and of each folder above it, up to the root (only those that exist)."""
  ids, path = [], os.path.abspath(path)
  while True:
    if os.path.isdir(path):
      ids.append(_identity(path))
    parent = os.path.dirname(path)
    if parent == path:
      return ids
    path = parent


def _file_ids(folder):
  """{(device, inode): path} of the files directly in `folder` (entries that cannot be read are left to
  check_readable)."""
  ids = {}
  for entry in os.scandir(folder):
    try:
      if entry.is_file():
        ids[_identity(entry.path)] = entry.path
    except OSError:
      continue
  return ids


def check_readable(path, flag):
  """Raises InputError naming `path` unless it is a regular file or folder this process can read: a symlink loop, a
  dangling link, a file without read permission or a device is bad input, not something to skip."""
  try:
    st = os.stat(path)
  except OSError as e:
    if os.path.islink(path):
      raise InputError(f"{flag}: {path} is a symlink that leads nowhere readable ({e.strerror})") from None
    raise InputError(f"{flag}: cannot read {path} ({e.strerror})") from None
  if stat.S_ISDIR(st.st_mode):
    if not os.access(path, os.R_OK | os.X_OK):
      raise InputError(f"{flag}: cannot read the folder {path} (permission denied)")
  elif not stat.S_ISREG(st.st_mode):
    raise InputError(f"{flag}: {path} is not a regular file")
  elif not os.access(path, os.R_OK):
    raise InputError(f"{flag}: cannot read {path} (permission denied)")


def check_out_apart(out, inputs, out_flag="--out"):
  """Raises InputError unless the folder `out` is apart from every input: not the same folder, neither inside the
  other, and no file in it the same file (a hard link) as an input file. inputs: (flag, path) pairs, files or
  folders; paths that do not exist are left to the tool's own checks."""
  out_up = _folders_up(out)  # out itself (when it exists) and every folder above it
  out_id = _identity(out) if os.path.isdir(out) else None
  in_out = _file_ids(out) if out_id is not None else {}
  for flag, path in inputs:
    if not path or not os.path.exists(path):
      continue
    where = f"{out_flag}={out} and {flag}={path}"
    if os.path.isdir(path):
      folder = _identity(path)
      if out_id == folder:
        raise InputError(f"{where} are the same folder: write to a new folder")
      if folder in out_up:
        raise InputError(f"{where}: {out_flag} is inside the input folder; write to a folder outside it")
      if out_id is not None and out_id in _folders_up(path):
        raise InputError(f"{where}: the input is inside {out_flag}; write to a folder that holds no input")
      for identity, input_file in _file_ids(path).items():
        if identity in in_out:
          raise InputError(f"{where}: {in_out[identity]} is the input file {input_file} (a hard link); writing "
                           "it would overwrite the input")
    else:
      if out_id is not None and out_id in _folders_up(os.path.dirname(os.path.abspath(path))):
        raise InputError(f"{where}: the input is inside {out_flag}; write to a folder that holds no input")
      if _identity(path) in in_out:
        raise InputError(f"{where}: {in_out[_identity(path)]} is the input file {path} (a hard link); writing it "
                         "would overwrite the input")


def readable_files(paths, flag):
  """The files among `paths` (matches of an input pattern), folders left out; any other match that cannot be read
  (a symlink loop, a dangling link, no read permission) is an InputError naming it, never silently dropped."""
  found = []
  for path in paths:
    if os.path.isdir(path):
      continue
    check_readable(path, flag)
    found.append(path)
  return found


# -- Outputs a run writes: checked before it starts, so a bad path is bad input, not a crash midway ---------------
_TMP_ROOM = len(TMP_SUFFIX) + 9  # atomic_output's ".tmp.<pid>" on top of the final name


def _limit(path, name, default):
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  try:
    return os.pathconf(existing, name)
  except (OSError, ValueError):
    return default


def check_output_path(path, folder, where):
  """Raises InputError starting with `where` (the flag, and the path when the flag does not name it) unless the
  run can write `path`: within the file system's path and name limits, not a file where a folder goes (or the
  reverse), its folder writable. Creates `path` when it is a folder."""
  room = 0 if folder else _TMP_ROOM  # a file may be written through a temporary name beside it
  length, path_max = len(os.fsencode(os.path.abspath(path))), _limit(path, "PC_PATH_MAX", 4096)
  if length + room >= path_max:
    raise InputError(f"{where}: the path is too long ({length} bytes; this file system allows "
                     f"{path_max - 1 - room} here, with room for temporary names); expected a shorter path")
  name, name_max = os.path.basename(os.path.abspath(path)), _limit(path, "PC_NAME_MAX", 255)
  if len(os.fsencode(name)) + room > name_max:
    raise InputError(f"{where}: the name {name[:40]}... is too long ({len(os.fsencode(name))} bytes; this file "
                     f"system allows {name_max - room} here, with room for temporary names)")
  if folder and os.path.lexists(path) and not os.path.isdir(path):
    raise InputError(f"{where}: exists and is not a directory")
  if not folder and os.path.isdir(path):
    raise InputError(f"{where}: is a directory; the run writes a file there")
  parent = path if folder else os.path.dirname(os.path.abspath(path))
  if folder:
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as e:
      raise InputError(f"{where}: cannot create it ({e.strerror})") from None
  if not os.access(parent, os.W_OK | os.X_OK):
    raise InputError(f"{where}: " + ("not writable" if folder else f"its folder {parent} is not writable"))
