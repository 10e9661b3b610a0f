"""The trainer's command line: a fast --help without TensorFlow, every flag documented, what the run logs."""
import json
import os
import re
import subprocess

import pytest

from conftest import PYTHON, ROOT, run_train

MAIN_FLAGS = ["task", "flagfile", "data_dir", "output_dir", "global_batch_size", "precision", "distribution",
              "kernels", "seed"]

# Runs the CLI's --help as users do, then says which heavy packages that process had imported.
_HELP_PROBE = """
import runpy, sys
sys.argv = ["tf_gp2bm.train", "--help"]
try:
  runpy.run_module("tf_gp2bm.train", run_name="__main__")
except SystemExit as e:
  code = e.code
heavy = sorted(m for m in ("tensorflow", "tf_keras", "official", "keras", "horovod") if m in sys.modules)
print("PROBE", code, ",".join(heavy), file=sys.stderr)
"""


def _env():
  return dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))


def test_help_exits_0_and_loads_no_tensorflow():
  # What keeps --help fast is that it loads none of the heavy packages (checked below), not a wall-clock limit,
  # which a loaded machine would break.
  r = run_train("--help", timeout=60)
  assert r.returncode == 0, r.stderr[-2000:]
  probe = subprocess.run([PYTHON, "-c", _HELP_PROBE], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=60)
  assert "PROBE 0 \n" in probe.stderr, probe.stderr[-2000:]  # exit 0 and none of the heavy packages


def _help_entries(text):
  """flag name -> its help paragraph, from the `  --name...` / indented text layout of --help."""
  entries, name = {}, None
  for line in text.splitlines():
    m = re.match(r"  --(?:\[no\])?([a-z0-9_]+)", line)
    if m:
      name = m.group(1)
      entries[name] = ""
    elif name and line.startswith("    "):
      entries[name] += " " + line.strip()
    else:
      name = None
  return entries


def test_help_shows_the_main_flags_first():
  r = run_train("--help", timeout=60)
  main_section = r.stdout.split("main flags:", 1)[1].split("\n\n", 1)[0]
  assert list(_help_entries(main_section)) == MAIN_FLAGS


def test_every_flag_has_help_text_and_shows_its_default():
  r = run_train("--help", timeout=60)
  entries = _help_entries(r.stdout)
  # Every flag this project defines: the trainer's, and each task's (its Config's params, shared ones included).
  probe = subprocess.run(
      [PYTHON, "-c", "from absl import flags; import tf_gp2bm.train; from tf_gp2bm import tasks; "
       "from tf_gp2bm.tasks.base import params; "
       "print(' '.join(f.name for m, fs in flags.FLAGS.flags_by_module_dict().items() "
       "if not m.startswith('absl.') for f in fs)); "
       "print(' '.join(f.name for t in tasks.names() for f in params(tasks.config_class(t))))"],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
  ours = set(probe.stdout.split())
  assert {"task", "global_batch_size", "lars_momentum", "max_seq_length", "profile_steps"} <= ours
  missing = sorted(ours - set(entries))
  assert not missing, f"flags missing from --help: {missing}"
  for name in ours:
    text = entries[name]
    assert re.search(r"\(default: [^)]+\)$", text), f"--{name}: no default shown: {text!r}"
    assert len(text.split("(default:")[0].strip()) > 10, f"--{name}: no help text"


@pytest.mark.slow
@pytest.mark.parametrize("closed", [False, True])
def test_submission_division_follows_closed(closed, tmp_path):
  args = ["--task=resnet", "--dry_run", "--seed=1"]
  args += ["--flagfile=flags/resnet/8xgpu.flags", "--dry_run_replicas=8"] if closed else [
      "--flagfile=flags/resnet/smoke.flags"]
  r = run_train(*args, timeout=600)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  divisions = [json.loads(line.split(":::MLLOG ", 1)[1])["value"] for line in r.stdout.splitlines()
               if '"key": "submission_division"' in line]
  assert divisions == ["closed" if closed else "open"]


# A process that routes its stderr, writes TensorFlow-style C++ lines straight to fd 2, then aborts.
_NOISY_PROCESS = """
import os, sys
from tf_gp2bm import native_log
native_log.route_stderr(sys.argv[1])
lines = [
    "I0000 00:00:1795855169.161463    3952 device_compiler.h:196] Compiled cluster using XLA!",
    "E0000 00:00:1795855012.615672     312 text_format.cc:430] Error parsing text-format "
    "tensorflow.XlaSerializedCacheEntry: 2:1: Expected identifier, got: 6",
    "E1128 08:17:23.096869 1391 cuda_executor.cc:1] a real error",
    "the last words before the abort",
]
for line in lines:
  os.write(2, (line + "\\n").encode())
os.abort()
"""


def test_tensorflow_noise_goes_to_its_log_and_an_abort_loses_no_line(tmp_path):
  noise = tmp_path / "rank0.log"
  r = subprocess.run([PYTHON, "-c", _NOISY_PROCESS, str(noise)], cwd=tmp_path, env=_env(), capture_output=True,
                     text=True, timeout=60)
  assert r.returncode != 0  # aborted
  assert r.stderr.splitlines() == ["E1128 08:17:23.096869 1391 cuda_executor.cc:1] a real error",
                                   "the last words before the abort"]
  kept = noise.read_text()
  assert "Compiled cluster using XLA!" in kept and "XlaSerializedCacheEntry" in kept


@pytest.mark.slow
def test_a_run_with_a_warm_xla_cache_shows_no_tensorflow_noise(demo_imagenet, tmp_path):
  # The driver shares a persistent XLA cache between a set's runs; the second run loads the first one's entries.
  env = {"TF_XLA_FLAGS": f"--tf_xla_persistent_cache_directory={tmp_path / 'xla_cache'}"}
  for name in ("cold", "warm"):
    r = run_train("--task=resnet", "--flagfile=flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}",
                  f"--output_dir={tmp_path / name}", "--seed=2", "--train_epochs=2", env=env)
    assert r.returncode in (0, 3), r.stdout[-3000:] + r.stderr[-3000:]
  terminal = r.stdout + r.stderr
  for noise in ("XlaSerializedCacheEntry", "cuInit", "InitializeLog", "Compiled cluster using XLA"):
    assert noise not in terminal
  assert "[tf_gp2bm] step 36/36" in r.stdout
  kept = (tmp_path / "warm" / "tensorflow_logs" / "rank0.log").read_text()
  assert "Error parsing text-format tensorflow.XlaSerializedCacheEntry" in kept  # the cache was hit, and kept


def test_each_rank_draws_its_own_dropout_seeds_from_the_run_seed():
  """The seed stream behind every swapped dropout: equal for the same (seed, rank), different across ranks."""
  from tf_gp2bm.kernels.model_garden import SeedStream
  from tf_gp2bm.training_run import seed_random_generators

  def first_seeds(seed, rank):
    seed_random_generators(seed, rank)
    stream = SeedStream()
    return [stream.seed(0.1, training=True).numpy().tolist() for _ in range(3)]

  assert first_seeds(7, 0) == first_seeds(7, 0)
  assert first_seeds(7, 0) != first_seeds(7, 1)
  assert first_seeds(7, 1) != first_seeds(8, 1)
