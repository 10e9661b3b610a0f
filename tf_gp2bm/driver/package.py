"""The MLPerf submission tree inside a set folder, and the hand-in tarball.

  submission/<org>/systems/<system>.json
  submission/<org>/results/<system>/<task>/result_<j>.txt      the N scored runs (exactly 5 / 10 for the checker)
  submission/<org>/results/<system>/<task>/extra_run_<i>.txt   further runs of the set, kept beside them
  submission/<org>/benchmarks/<task>/implementations/tf_gp2bm/ the source, plus flags_used/<task>.flags and
                                                               vendor_kernels/ (the --kernels module's files)
Files are copied, never overwritten: when a tree built earlier no longer matches the runs (a log was changed, a
rescore moved the scored window), the whole tree is moved aside as submission.superseded-N and built again.
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile

from tf_gp2bm.files import repo_root, sha256_file, write_json_atomic
from tf_gp2bm.kernels import module_files


IMPL = "tf_gp2bm"
KERNELS_SNAPSHOT = "kernels_source"  # <set>/kernels_source/: the --kernels module's files as the set started
VENDOR_KERNELS = "vendor_kernels"    # where they go in the implementation tree
KERNEL_CHECK_REPORT = "kernel_check.txt"  # beside them: the parity report the docs tell vendors to keep


class StaleTree(FileExistsError):
  """The submission tree holds a file that differs from what the runs now say."""
MAX_SOURCE_FILE = 5 * 1024 * 1024  # the implementation is code and configs; nothing large belongs in it


def safe_name(name):
  """A folder/file name for org and system ids (the checker splits paths on '/')."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "system"


def copy_once(src, dst):
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  if os.path.exists(dst):
    if sha256_file(src) != sha256_file(dst):
      raise StaleTree(f"{dst} exists with different content than {src}; refusing to overwrite")
    return
  shutil.copyfile(src, dst)


# Never part of the implementation: environments, outputs, caches (matches .gitignore for a tree without git).
EXCLUDE_DIRS = {".git", ".venv", "results", "runs", "demo_data", "__pycache__", ".pytest_cache", ".gpubench",
                ".whl"}


def source_files():
  """Tracked and untracked-but-not-ignored files of the repository (what the vendor actually runs); in a copy
  without .git (an unpacked tarball), every file outside EXCLUDE_DIRS."""
  out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo_root(),
                       capture_output=True, text=True)
  if out.returncode == 0 and os.path.isdir(os.path.join(repo_root(), ".git")):
    rels = out.stdout.splitlines()
  else:
    rels = []
    for d, dirs, files in os.walk(repo_root()):
      dirs[:] = [x for x in dirs if x not in EXCLUDE_DIRS and not x.endswith(".egg-info")]
      rels += [os.path.relpath(os.path.join(d, f), repo_root()) for f in files if not f.endswith(".pyc")]
  return [rel for rel in rels if os.path.isfile(os.path.join(repo_root(), rel))
          and os.path.getsize(os.path.join(repo_root(), rel)) <= MAX_SOURCE_FILE]


def snapshot_source(set_dir):
  """Copies the code as it is when the set starts into <set>/source: the tree ships what actually ran."""
  dst = os.path.join(set_dir, "source")
  for rel in source_files():
    copy_once(os.path.join(repo_root(), rel), os.path.join(dst, rel))
  return dst


def snapshot_kernels(set_dir, module):
  """Copies the --kernels module's files as the set starts; returns how many (InputError names a bad module)."""
  files = module_files(module)
  for rel, path in files.items():
    copy_once(path, os.path.join(set_dir, KERNELS_SNAPSHOT, rel))
  return len(files)


def save_kernel_check(set_dir, module):
  """Runs kernel_check on the module as the set starts, keeping its report with the module's snapshot (and so in
  the submission tree); returns its exit code (0 within tolerance, 1 differs, 2 unloadable)."""
  report = os.path.join(set_dir, KERNELS_SNAPSHOT, KERNEL_CHECK_REPORT)
  os.makedirs(os.path.dirname(report), exist_ok=True)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([p for p in sys.path if p] +
                                                    [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
  result = subprocess.run([sys.executable, "-m", "tf_gp2bm.kernel_check", f"--kernels={module}",
                           f"--report={report}"], cwd=repo_root(), env=env, capture_output=True, text=True)
  if result.returncode not in (0, 1) or not os.path.exists(report):
    with open(report, "w") as f:  # the check itself failed: keep why, not an empty file
      f.write(f"kernel_check --kernels={module} exited {result.returncode}\n{result.stderr[-4000:]}")
  return result.returncode


def org_dir(runset):
  return os.path.join(runset.path, "submission", safe_name(runset.config.org))


def results_dir(runset, task):
  return os.path.join(org_dir(runset), "results", safe_name(runset.config.system_name), task)


def build_tree(runset, scored, sysdesc):
  """Creates/completes the submission tree for the scored tasks; returns the <org> folder. A tree that no
  longer matches is moved aside (returned second) and built again."""
  try:
    return _build_tree(runset, scored, sysdesc), None
  except StaleTree:
    old = os.path.join(runset.path, "submission")
    n = 1
    while os.path.exists(f"{old}.superseded-{n}"):
      n += 1
    os.rename(old, f"{old}.superseded-{n}")
    return _build_tree(runset, scored, sysdesc), f"{old}.superseded-{n}"


def _build_tree(runset, scored, sysdesc):
  c = runset.config
  org = org_dir(runset)
  system = safe_name(c.system_name)
  sys_json = os.path.join(org, "systems", f"{system}.json")
  if not os.path.exists(sys_json):
    os.makedirs(os.path.dirname(sys_json), exist_ok=True)
    write_json_atomic(sys_json, sysdesc)
  snapshot = os.path.join(runset.path, "source")
  sources = [os.path.relpath(os.path.join(d, f), snapshot) for d, _, fs in os.walk(snapshot) for f in fs]
  for task, ts in scored.items():
    res_dir = results_dir(runset, task)
    os.makedirs(res_dir, exist_ok=True)
    start, stop = ts.window if ts.window else (0, 0)
    for i, r in enumerate(ts.runs):
      if not os.path.exists(r.path):
        continue  # a run that crashed before logging has nothing to submit; summary says so
      name = f"result_{i - start}.txt" if start <= i < stop else f"extra_run_{i}.txt"
      copy_once(r.path, os.path.join(res_dir, name))
    impl = os.path.join(org, "benchmarks", task, "implementations", IMPL)
    for rel in sources:
      copy_once(os.path.join(snapshot, rel), os.path.join(impl, rel))
    copy_once(runset.flagfile(task), os.path.join(impl, "flags_used", f"{task}.flags"))
    kernels = os.path.join(runset.path, KERNELS_SNAPSHOT)
    for d, _, fs in os.walk(kernels):
      for f in fs:
        rel = os.path.relpath(os.path.join(d, f), kernels)
        copy_once(os.path.join(d, f), os.path.join(impl, VENDOR_KERNELS, rel))
  return org


def make_tarball(set_dir):
  """<set>/gp2bm_<set>.tar.gz with logs, results tree, summaries and plots; the demo data stays out."""
  base = os.path.basename(set_dir.rstrip("/"))
  path = os.path.join(set_dir, f"gp2bm_{base}.tar.gz")
  n = 2
  while os.path.exists(path):
    path = os.path.join(set_dir, f"gp2bm_{base}-{n}.tar.gz")
    n += 1
  skip = {"data", "source", KERNELS_SNAPSHOT, "xla_cache"}  # source and kernels are in the submission tree

  def keep(info):
    rel = info.name.split("/", 1)[1] if "/" in info.name else ""
    top = rel.split("/", 1)[0]
    if top in skip or (top.startswith("gp2bm_") and top.endswith(".tar.gz")) or ".tmp." in rel:
      return None
    return info

  tmp = path + ".partial"
  with tarfile.open(tmp, "w:gz") as tar:
    tar.add(set_dir, arcname=base, filter=keep)
  os.replace(tmp, path)
  return path
