"""Checks before any timed run, printed as a table. Official mode refuses to start on a FAIL unless --force;
a flagfile the trainer rejects stops the set in every mode (each run would fail the same way).

Each check is a row {check, status, detail} with status PASS, WARN, FAIL or N/A.
"""
import concurrent.futures
import os
import re
import shutil
import sys

from tf_gp2bm.errors import InputError
from tf_gp2bm.kernels import module_files
from tf_gp2bm.tasks import spec as task_spec
from tf_gp2bm.tasks.spec_checks import last_message, python_module, run_tool

from . import checks, hosts, system_desc

GIB = 1024 ** 3
DRY_RUN_CHECK = "flagfile dry run"


def gpus_visible_to_tf():
  # A child process: importing TensorFlow here would hold GPU memory in the driver for the whole set.
  rc, text = run_tool([sys.executable, "-c", "import tensorflow as tf; "
                       "print('GPUS', len(tf.config.list_physical_devices('GPU')))"])
  m = re.search(r"GPUS (\d+)", text or "")
  return (int(m.group(1)), "") if m else (None, (text or "")[-200:])


def check_gpus(need, demo):
  n, err = gpus_visible_to_tf()
  if n is None:
    return [("GPUs visible to TensorFlow", "FAIL", f"TensorFlow did not start: {err}")]
  status = "PASS" if n >= need else ("N/A" if demo else "FAIL")
  rows = [("GPUs visible to TensorFlow", status, f"{n} (need {need})" + ("; demo runs on CPU" if demo else ""))]
  gpus = system_desc.gpu_info()
  if gpus:
    free = ", ".join(f"{g['memory_free_mib']}/{g['memory_total_mib']} MiB" for g in gpus)
    rows.append(("GPU free memory", "PASS", f"{gpus[0]['name']}: {free}"))
    rows.append(("NVIDIA driver / CUDA", "PASS", f"driver {gpus[0]['driver']}, CUDA {system_desc.cuda_version()}"))
  else:
    rows.append(("GPU free memory / driver / CUDA", "N/A" if demo else "FAIL", "nvidia-smi not available"))
  return rows


def check_horovod(np_):
  if np_ <= 1:
    return [("Horovod (TensorFlow + NCCL)", "N/A", "single process, horovodrun not used")]
  rc, text = run_tool(["horovodrun", "--check-build"], timeout=120)
  if rc is None:
    return [("Horovod (TensorFlow + NCCL)", "FAIL", text)]
  tf_ok = re.search(r"\[X\]\s*TensorFlow", text) is not None
  nccl_ok = re.search(r"\[X\]\s*NCCL", text) is not None
  return [("Horovod (TensorFlow + NCCL)", "PASS" if tf_ok and nccl_ok else "FAIL",
           f"horovodrun --check-build: TensorFlow {'yes' if tf_ok else 'NO'}, NCCL {'yes' if nccl_ok else 'NO'}")]


def check_disk(results_root, np_):
  rows = []
  if os.path.exists("/dev/shm"):
    shm = shutil.disk_usage("/dev/shm").total / GIB
    # NCCL and Horovod put their buffers in /dev/shm; docker's 64 MiB default breaks multi-GPU runs.
    status = "PASS" if shm >= 1 or np_ <= 1 else "FAIL"
    rows.append(("/dev/shm size", status, f"{shm:.1f} GiB" + ("" if status == "PASS" else " (need >= 1 GiB)")))
  else:
    rows.append(("/dev/shm size", "WARN", "/dev/shm does not exist"))
  os.makedirs(results_root, exist_ok=True)
  free = shutil.disk_usage(results_root).free / GIB
  rows.append(("free disk (results)", "PASS" if free >= 2 else "FAIL", f"{free:.1f} GiB free at {results_root}"))
  return rows


def dry_run(task, flagfile, replicas, kernels=None, extra=()):
  """The trainer parses the flagfile and plans the run without data (`--dry_run`): a typo fails here, once,
  instead of in every run. extra: trainer flags the driver adds to every run of the task (--data_service)."""
  if not os.path.exists(flagfile):
    return [(f"{DRY_RUN_CHECK} {task}", "FAIL", f"{flagfile} does not exist")]
  args = [f"--task={task}", f"--flagfile={flagfile}", "--dry_run", f"--dry_run_replicas={replicas}", *extra]
  args += [f"--kernels={kernels}"] if kernels else []
  rc, text = python_module("tf_gp2bm.train", *args, timeout=600)
  if rc == 0:
    return [(f"{DRY_RUN_CHECK} {task}", "PASS", f"python -m tf_gp2bm.train --task={task} --flagfile=... --dry_run")]
  return [(f"{DRY_RUN_CHECK} {task}", "FAIL", f"exit {rc}: {last_message(text)[:240]}")]


def check_rcp(task, flagfile, ruleset):
  gbs = checks.flagfile_global_batch_size(flagfile) if os.path.exists(flagfile) else None
  if gbs is None:
    return [(f"RCP {task}", "WARN", f"{flagfile} is missing or sets no --global_batch_size; RCP not looked up")]
  info = checks.rcp_lookup(task, gbs, ruleset)
  return [(f"RCP {task}", "WARN" if info.warning else "PASS", info.line())]


def check_kernels(module):
  if not module:
    return []
  try:
    files = module_files(module)
  except InputError as e:
    return [("vendor kernels", "FAIL", str(e))]
  return [("vendor kernels", "PASS", f"--kernels={module}: {len(files)} file(s), copied into the submission")]


def run_preflight(config, launch, sysdesc, extra=(), trainer_args=None):
  """All checks for a set: config is the SetConfig, launch the validated Launch, extra any further check
  functions (each returning rows), e.g. the multi-node checks; trainer_args: task -> flags the driver adds to its
  runs (the dry run gets them too). Returns rows."""
  trainer_args = trainer_args or {}
  flagfiles = {t: config.flagfile(t) for t in config.tasks}
  # Every slow check is a child process (TensorFlow start-up, the trainer's dry run, dataset verifiers): run
  # them side by side.
  slow = [lambda: check_gpus(launch.np // launch.num_hosts, config.demo), lambda: check_horovod(launch.np)]
  slow += [lambda t=t: dry_run(t, flagfiles[t], launch.np, config.kernels, trainer_args.get(t, ()))
           for t in config.tasks]
  slow += [lambda s=task_spec.get(t): s.check_data(config.data[s.name]) for t in config.tasks]
  slow += list(extra)
  rows = []
  with concurrent.futures.ThreadPoolExecutor(max_workers=len(slow)) as pool:
    futures = [pool.submit(f) for f in slow]
    rows += check_disk(config.results_root, launch.np)
    cache_ok, detail = hosts.drop_caches_detail(launch)
    rows.append(("page cache drop", "PASS" if cache_ok else "WARN", detail + ("" if cache_ok else
                 " (runs log cache_clear=false: an official set is then NOT SUBMITTABLE)")))
    for t in config.tasks:
      rows += check_rcp(t, flagfiles[t], config.ruleset)
    rows += check_kernels(config.kernels)
    missing = system_desc.missing_fields(sysdesc)
    rows.append(("system description", "FAIL" if missing else "PASS",
                 "missing (pass --system_field key=value): " + ", ".join(missing) if missing
                 else f"{len(sysdesc)} fields"))
    rows = [row for fut in futures for row in fut.result()] + rows
  return [r if isinstance(r, dict) else {"check": r[0], "status": r[1], "detail": r[2]} for r in rows]


def format_table(rows):
  w = max(len(r["check"]) for r in rows)
  lines = [f"{'check':<{w}}  status  detail", f"{'-' * w}  ------  ------"]
  lines += [f"{r['check']:<{w}}  {r['status']:<6}  {r['detail']}" for r in rows]
  return "\n".join(lines)


def failures(rows):
  return [r for r in rows if r["status"] == "FAIL"]


def bad_flagfiles(rows):
  """Failed dry runs: the set cannot start even with --force."""
  return [r for r in failures(rows) if r["check"].startswith(DRY_RUN_CHECK)]
