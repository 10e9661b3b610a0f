"""A third task that lives outside the project (tests/third_task/toy_task and flags/ are its template): `install`
copies it into a folder of its own, with the entry point that registers it, so a process whose PYTHONPATH has that
folder knows --task=toy. Nothing in the project names it."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

TEMPLATE = Path(__file__).parent / "toy_task"
ROOT = Path(__file__).resolve().parents[2]
PACKAGE, NAME = "toy_task", "toy"


def install(root):
  """Writes the toy package, its flagfiles (root/flags/toy/) and its dist-info (entry point group tf_gp2bm.tasks)
  under `root`; returns `root`."""
  root = Path(root)
  shutil.copytree(TEMPLATE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copytree(TEMPLATE.parent / "flags", root / "flags")
  dist = root / f"{PACKAGE}-0.1.dist-info"
  dist.mkdir()
  (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n")
  (dist / "entry_points.txt").write_text(f"[tf_gp2bm.tasks]\n{NAME} = {PACKAGE}\n")
  return root


def python(code, *extra_path):
  """Runs `code` (dedented) in a fresh interpreter with the project and `extra_path` importable."""
  path = os.pathsep.join([str(ROOT), *map(str, extra_path)])
  env = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
