"""Checks before any timed run, printed as a table. Official mode refuses to start on a FAIL unless --force.

Each check is (name, status, detail) with status PASS, WARN, FAIL or N/A. A check whose tool does not exist yet
(a dataset verifier, horovodrun) says "not available" instead of failing the driver.
"""
import concurrent.futures
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

from . import checks, runs, system_desc

GIB = 1024 ** 3


def _tool(args, timeout=600):
  try:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, TF_USE_LEGACY_KERAS="1"), cwd=runs.REPO)
  except FileNotFoundError:
    return None, f"{args[0]} not found"
  except subprocess.TimeoutExpired:
    return None, f"{' '.join(args[:4])} timed out after {timeout}s"
  return out.returncode, (out.stdout + out.stderr).strip()


def gpus_visible_to_tf():
  # A child process: importing TensorFlow here would hold GPU memory in the driver for the whole set.
  rc, text = _tool([sys.executable, "-c", "import tensorflow as tf; "
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


def check_horovod(np_, demo):
  if np_ <= 1:
    return [("Horovod (TensorFlow + NCCL)", "N/A", "single process, horovodrun not used")]
  rc, text = _tool(["horovodrun", "--check-build"], timeout=120)
  if rc is None:
    return [("Horovod (TensorFlow + NCCL)", "FAIL", text)]
  tf_ok = re.search(r"\[X\]\s*TensorFlow", text) is not None
  nccl_ok = re.search(r"\[X\]\s*NCCL", text) is not None
  ok = tf_ok and nccl_ok
  return [("Horovod (TensorFlow + NCCL)", "PASS" if ok else "FAIL",
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


def check_resnet_data(data_dir):
  name = "ResNet dataset"
  if not data_dir or not os.path.isdir(data_dir):
    return [(name, "FAIL", f"--resnet_data_dir {data_dir!r} is not a directory")]
  manifest = os.path.join(data_dir, "manifest.json")
  if importlib.util.find_spec("data_prep.imagenet") is None:
    status = "WARN" if os.path.exists(manifest) else "FAIL"
    return [(name, status, f"verifier data_prep.imagenet not available; manifest.json "
                           f"{'present' if os.path.exists(manifest) else 'MISSING'} in {data_dir}")]
  rc, text = _tool([sys.executable, "-m", "data_prep.imagenet", "verify", data_dir, "--quick"])
  last = _last_message(text)
  return [(name, "PASS" if rc == 0 else "FAIL", f"data_prep.imagenet verify --quick: exit {rc}; {last[:160]}")]


def _last_message(text):
  """The tool's own last line, skipping TensorFlow/absl start-up chatter (timestamped C++ log lines)."""
  lines = [l for l in (text or "").splitlines()
           if l.strip() and not re.match(r"^(\d{4}-\d\d-\d\d \d\d:|[IWEF]\d{4} |WARNING: All log messages|"
                                         r"To enable the following|oneDNN|E0000)", l)]
  return lines[-1] if lines else ""


def _records(path):
  return [p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
          if os.path.isfile(p) and not p.endswith(".json")]


def check_bert_data(data_dir, eval_dir, init_checkpoint):
  rows = []
  train = _records(data_dir) if data_dir and os.path.isdir(data_dir) else []
  rows.append(("BERT training records", "PASS" if train else "FAIL",
               f"{len(train)} files in {data_dir}" if train else f"--bert_data_dir {data_dir!r}: no record files"))
  ev = _records(eval_dir) if eval_dir and os.path.isdir(eval_dir) else []
  rows.append(("BERT eval set", "PASS" if ev else "FAIL",
               f"{len(ev)} files in {eval_dir}" if ev else f"--bert_eval_dir {eval_dir!r}: no record files"))
  ck = init_checkpoint or ""
  present = bool(ck) and (os.path.exists(ck) or bool(glob.glob(ck + ".index")) or bool(glob.glob(ck + "*")))
  rows.append(("BERT init checkpoint", "PASS" if present else "FAIL",
               ck if present else f"--bert_init_checkpoint {ck!r} not found"))
  return rows


def run_preflight(config, results_root, sysdesc):
  """All checks for the set described by config (the future set.json)."""
  demo = config["mode"] == "demo"
  rows = [("flagfile " + t, "PASS" if os.path.exists(f) else "FAIL", f) for t, f in config["flagfiles"].items()]
  # The slow checks are child processes (TensorFlow start-up, dataset verifiers): run them side by side.
  slow = [lambda: check_gpus(config["np"], demo), lambda: check_horovod(config["np"], demo)]
  if "resnet" in config["tasks"]:
    slow.append(lambda: check_resnet_data(config["data"]["resnet"]["data_dir"]))
  with concurrent.futures.ThreadPoolExecutor(max_workers=len(slow)) as pool:
    futures = [pool.submit(f) for f in slow]
    rows += [row for fut in futures[:2] for row in fut.result()]
    rows += check_disk(results_root, config["np"])
    cache_ok, detail = runs.drop_page_cache()
    rows.append(("page cache drop", "PASS" if cache_ok else "WARN", detail))
    rows += [row for fut in futures[2:] for row in fut.result()]
  if "bert" in config["tasks"]:
    d = config["data"]["bert"]
    rows += check_bert_data(d["data_dir"], d["eval_dir"], d["init_checkpoint"])
  for task in config["tasks"]:
    f = config["flagfiles"][task]
    gbs = checks.flagfile_global_batch_size(f) if os.path.exists(f) else None
    if gbs is None:
      rows.append((f"RCP {task}", "WARN", f"{f} is missing or sets no --global_batch_size; RCP not looked up"))
    else:
      info = checks.rcp_lookup(task, gbs, config["ruleset"])
      rows.append((f"RCP {task}", "WARN" if info.warning else "PASS", info.line()))
  missing = system_desc.missing_fields(sysdesc)
  rows.append(("system description", "FAIL" if missing else "PASS",
               "missing (pass --system_field key=value): " + ", ".join(missing) if missing
               else f"{len(sysdesc)} fields"))
  return [{"check": n, "status": s, "detail": d} for n, s, d in rows]


def format_table(rows):
  w = max(len(r["check"]) for r in rows)
  lines = [f"{'check':<{w}}  status  detail", f"{'-' * w}  ------  ------"]
  lines += [f"{r['check']:<{w}}  {r['status']:<6}  {r['detail']}" for r in rows]
  return "\n".join(lines)


def failures(rows):
  return [r for r in rows if r["status"] == "FAIL"]
