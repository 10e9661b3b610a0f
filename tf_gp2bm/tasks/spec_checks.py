"""Small helpers the task specs' preflight checks share (TF-free: checks run tools as child processes)."""
import glob
import os
import re
import subprocess
import sys

from tf_gp2bm.files import repo_root

# TensorFlow/absl start-up chatter (timestamped C++ log lines) that is never the tool's own answer.
_NOISE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:|[IWEF]\d{4} |WARNING: All log messages|To enable the following|"
                    r"oneDNN|E0000)")


def run_tool(args, timeout=600):
  """(exit code or None, combined output) of a child process started in the repository root."""
  try:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=repo_root())
  except FileNotFoundError:
    return None, f"{args[0]} not found"
  except subprocess.TimeoutExpired:
    return None, f"{' '.join(args[:4])} timed out after {timeout}s"
  return out.returncode, (out.stdout + out.stderr).strip()


def python_module(module, *args, timeout=600):
  return run_tool([sys.executable, "-m", module, *args], timeout=timeout)


def last_message(text):
  """The tool's own last error line (else its last line), skipping start-up chatter."""
  lines = [l.strip() for l in (text or "").splitlines() if l.strip() and not _NOISE.match(l)]
  errors = [l for l in lines if l.lower().startswith("error")]
  return (errors or lines or [""])[-1]


def record_files(path):
  """Data files under a folder (manifests and other JSON metadata left out)."""
  if not path or not os.path.isdir(path):
    return []
  return [p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
          if os.path.isfile(p) and not p.endswith(".json")]
