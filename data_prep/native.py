"""Builds and loads data_prep/_native.c (the generator's hot loops) with the system C compiler, via ctypes.

Compiled once per source version into the user cache (~/.cache/tf_gp2bm). Without a compiler, `load()`
returns None and callers run the same algorithms in Python: identical output, slower.
"""
import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_native.c")
_lib = None


def _build(so_path):
  os.makedirs(os.path.dirname(so_path), exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    built = os.path.join(tmp, "native.so")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", SOURCE, "-o", built],
                   check=True, capture_output=True)
    os.replace(built, so_path)  # atomic, so a concurrent worker never loads half a library


def load():
  """The ctypes library, or None when it cannot be built (the reason is printed once)."""
  global _lib
  if _lib is not None:
    return _lib or None
  if os.environ.get("TF_GP2BM_NO_NATIVE"):
    _lib = False
    return None
  with open(SOURCE, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:16]
  cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tf_gp2bm")
  so_path = os.path.join(cache, f"data_prep_native_{digest}.so")
  try:
    if not os.path.exists(so_path):
      _build(so_path)
    lib = ctypes.CDLL(so_path)
  except (OSError, subprocess.CalledProcessError) as e:
    detail = getattr(e, "stderr", b"") or b""
    print(f"[data_prep.native] cannot build {SOURCE} ({e} {detail.decode(errors='replace')[:200]}); "
          "using the pure-Python loops (same output, slower)", file=sys.stderr)
    _lib = False
    return None
  vp, lg = ctypes.c_void_p, ctypes.c_long
  for name, args in (("shuffle_i32", [vp, lg, vp, lg]), ("truncate_pair", [vp, lg, lg, vp])):
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = lg, args
  lib.crc32c.restype, lib.crc32c.argtypes = ctypes.c_uint32, [ctypes.c_char_p, ctypes.c_size_t]
  i32, u32, dbl = ctypes.c_int32, ctypes.c_uint32, ctypes.c_double
  lib.build_instance.restype = lg
  lib.build_instance.argtypes = [vp, lg, vp, lg, lg, lg, lg, lg, i32, i32, i32, u32, dbl, lg, vp, vp, vp, vp, vp]
  lib.encode_example.restype = lg
  lib.encode_example.argtypes = [vp, lg, lg, vp, vp, lg, lg, lg, lg, vp, lg]
  _lib = lib
  return lib
