"""What one host of a multi-node set reports about itself: `python -m tf_gp2bm.driver.host_probe facts|drop_caches`.

Started once per host by horovodrun or srun (see hosts.py); prints one line `GP2BM_HOST <json>` that the driver
compares across hosts. Reads metadata only (versions, manifests, sizes): no record is opened before a run starts.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from tf_gp2bm.driver import system_desc
from tf_gp2bm.files import repo_root

MARKER = "GP2BM_HOST "
PACKAGES = ("tensorflow", "horovod", "mlperf-logging", "tf-keras", "tf-models-official")
# The code every rank imports and the flagfiles it reads: these must be byte-identical on every host.
SOURCE_DIRS = ("tf_gp2bm", "flags")


def source_digest(root=None):
  root = root or repo_root()
  h = hashlib.sha256()
  for top in SOURCE_DIRS:
    for d, dirs, files in os.walk(os.path.join(root, top)):
      dirs[:] = sorted(x for x in dirs if x != "__pycache__")  # walk order fixed, caches skipped
      for name in sorted(files):
        if name.endswith((".py", ".flags", ".json", ".c")):
          path = os.path.join(d, name)
          h.update(os.path.relpath(path, root).encode() + b"\0")
          with open(path, "rb") as f:
            h.update(f.read())
  return h.hexdigest()[:16]


def data_digest(path):
  """A dataset's identity without reading its records: its manifest's sha256, else the sorted names and sizes.

  None when the path does not exist on this host. A checkpoint prefix (model.ckpt-28252) matches its files."""
  manifest = os.path.join(path, "manifest.json")
  if os.path.isfile(manifest):
    with open(manifest, "rb") as f:
      return "manifest " + hashlib.sha256(f.read()).hexdigest()[:16]
  if os.path.isdir(path):
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
  elif os.path.isfile(path):
    files = [path]
  else:
    files = sorted(glob.glob(glob.escape(path) + ".*"))
    if not files:
      return None
  h = hashlib.sha256()
  for f in files:
    h.update(f"{os.path.relpath(f, os.path.dirname(path))}\0{os.path.getsize(f)}\n".encode())
  return f"{len(files)} files " + h.hexdigest()[:16]


def gpu_count():
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired):
    return 0
  return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def horovod_build():
  """{'tf_gpus', 'nccl', 'error'} from the TensorFlow and Horovod this host would train with."""
  try:
    import horovod.tensorflow as hvd  # optional: the check reports its absence
    import tensorflow as tf
  except Exception as e:  # ImportError or a broken TF/CUDA install: both are what preflight must name
    return {"tf_gpus": None, "nccl": False, "error": f"{type(e).__name__}: {e}"[:300]}
  return {"tf_gpus": len(tf.config.list_physical_devices("GPU")), "nccl": bool(hvd.nccl_built()), "error": None}


def facts(paths, shared_marker):
  out = {
      "host": socket.gethostname(),
      "versions": {p: system_desc.package_version(p) for p in PACKAGES},
      "python": sys.version.split()[0],
      "source": source_digest(),
      "gpus": gpu_count(),
      "shm_free_gib": round(shutil.disk_usage("/dev/shm").free / 2 ** 30, 2) if os.path.isdir("/dev/shm") else None,
      "data": {p: data_digest(p) for p in paths},
      "shared_results": os.path.exists(shared_marker) if shared_marker else None,
      "rank": rank(),
  }
  out.update(horovod_build())
  out["time"] = time.time()  # last: the driver compares it with the moment the line arrives
  return out


def rank():
  """This process's index in the probe launch: maps a report to the launch's host entry."""
  return os.environ.get("HOROVOD_RANK", os.environ.get("SLURM_PROCID"))


def drop_caches():
  os.sync()
  try:
    with open("/proc/sys/vm/drop_caches", "w") as f:
      f.write("3\n")
    return {"host": socket.gethostname(), "rank": rank(), "dropped": True, "detail": "page cache dropped"}
  except OSError as e:
    return {"host": socket.gethostname(), "rank": rank(), "dropped": False,
            "detail": f"cannot write /proc/sys/vm/drop_caches ({e.strerror or e})"}


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m tf_gp2bm.driver.host_probe", description=__doc__)
  p.add_argument("what", choices=["facts", "drop_caches"])
  p.add_argument("--path", action="append", default=[], help="a dataset path to identify (repeatable)")
  p.add_argument("--shared_marker", help="a file the driver wrote: visible here when the results are shared")
  a = p.parse_args(argv)
  result = facts(a.path, a.shared_marker) if a.what == "facts" else drop_caches()
  print(MARKER + json.dumps(result), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
