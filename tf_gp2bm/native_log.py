"""Keeps TensorFlow's C++ log noise off the terminal without losing it.

TensorFlow and XLA write their C++ log lines straight to file descriptor 2, where no Python setting reaches:
INFO/WARNING lines through absl even under TF_CPP_MIN_LOG_LEVEL=2, and two error-level lines that are harmless:
- "Error parsing text-format tensorflow.XlaSerializedCacheEntry": TensorFlow writes its persistent XLA cache
  entries in binary but reads them back through ReadTextOrBinaryProto, which tries the text parser first, logs
  this, then reads the binary entry correctly. It appears once per cache hit (every run after a set's first).
- "failed call to cuInit" on a machine without an NVIDIA device (CPU runs of a CUDA build).

`route_stderr(path)` points fd 2 at a small filter process (`python -m tf_gp2bm.native_log PATH`) that passes
every other line through to the real stderr and appends these to PATH (OUTPUT_DIR/tensorflow_logs/rank<N>.log,
next to TensorFlow's Python warnings). A child process, not a thread, so a
trainer that aborts or is killed still has every line it wrote delivered: the filter drains the pipe to its end.
"""
import atexit
import os
import re
import signal
import subprocess
import sys

from tf_gp2bm.files import repo_root

LOG_DIR = "tensorflow_logs"

_CPP_INFO_OR_WARNING = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] |[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] |"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")
_HARMLESS_ERRORS = [re.compile(r"Error parsing text-format tensorflow\.XlaSerializedCacheEntry")]
_NO_GPU_ERRORS = [re.compile(r"failed call to cuInit")]


def log_path(output_dir, rank):
  """OUTPUT_DIR/tensorflow_logs/rank<N>.log, created here: one file per process of the run."""
  folder = os.path.join(output_dir, LOG_DIR)
  os.makedirs(folder, exist_ok=True)
  return os.path.join(folder, f"rank{rank}.log")


def has_nvidia_device():
  return os.path.exists("/dev/nvidiactl")


def is_noise(line, no_gpu):
  if _CPP_INFO_OR_WARNING.match(line):
    return True
  patterns = _HARMLESS_ERRORS + (_NO_GPU_ERRORS if no_gpu else [])
  return any(p.search(line) for p in patterns)


def filter_stream(source, terminal, noise, no_gpu):
  for line in source:
    target = noise if is_noise(line.decode("utf-8", "replace"), no_gpu) else terminal
    target.write(line)
    target.flush()


def route_stderr(noise_path):
  """From now on this process's fd 2 goes through the filter; noise lines are appended to noise_path."""
  sys.stderr.flush()
  try:
    real_stderr = os.dup(2)
  except OSError:  # no stderr at all (a detached process): nothing reaches a terminal anyway
    return
  # The package's parent on the path, so the filter starts whatever the trainer's working directory.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo_root(), os.environ.get("PYTHONPATH")])))
  # Its own session: Ctrl-C or a scheduler's signal to the trainer's group must not kill the filter first.
  proc = subprocess.Popen([sys.executable, "-m", "tf_gp2bm.native_log", noise_path], stdin=subprocess.PIPE,
                          stdout=real_stderr, stderr=real_stderr, env=env, start_new_session=True)
  os.dup2(proc.stdin.fileno(), 2)
  proc.stdin.close()  # fd 2 now holds the pipe's only write end in this process

  def restore():
    # Runs at exit: hand fd 2 back so the filter sees the end of its input, and let it write the last lines.
    sys.stderr.flush()
    os.dup2(real_stderr, 2)
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()

  atexit.register(restore)


def main(argv):
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # the end of the input ends this process, nothing else
  with open(argv[1], "ab") as noise:
    filter_stream(sys.stdin.buffer, sys.stdout.buffer, noise, no_gpu=not has_nvidia_device())


if __name__ == "__main__":
  main(sys.argv)
