"""Shared fixtures: the repo root, the venv's python, demo data made once per session, a train runner."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PYTHON = sys.executable


def run_module(module, *args, cwd=None, timeout=900, env=None):
  """Runs `python -m module args` in a fresh process (as users do) and returns the CompletedProcess."""
  full_env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
  full_env.update(env or {})
  return subprocess.run([PYTHON, "-m", module, *map(str, args)], cwd=cwd or ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def run_train(*args, **kw):
  return run_module("tf_gp2bm.train", *args, **kw)


def check_compliance(log_path, tmp_path):
  """The official checker with the pinned ruleset; it writes compliance_checker.log to its cwd."""
  out = run_module("mlperf_logging.compliance_checker", "--usage", "training", "--ruleset", "4.0.0",
                   log_path, cwd=tmp_path)
  return out.returncode == 0 and "SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.fixture(scope="session")
def demo_imagenet(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo_imagenet")
  from data_prep.demo import imagenet as demo_imagenet
  demo_imagenet.generate(str(out))
  return out
