"""Preflight and page-cache drop on every host of a Launch, through the same engine the runs use.

`hosts` launches go through horovodrun (one process per host, so its ssh settings from --hvd_args apply), Slurm
launches through srun, local ones run the probe directly. Each host prints its facts (host_probe.py); a host that
does not answer, runs other versions or other code, or lacks a dataset stops the set with a row naming it.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from tf_gp2bm.files import repo_root

from . import host_probe, srun
from . import launch as launch_mod

GIB = 2 ** 30
CLOCK_WARN_S, CLOCK_FAIL_S = 0.5, 2.0  # run times come from rank 0, but the watchdog compares file times
PROBE_TIMEOUT_S = 600  # TensorFlow import on every host, on a busy cluster


def data_paths(set_config):
  """Every dataset/checkpoint path the set's runs read (the SetConfig's data of its tasks)."""
  return [p for t in set_config.tasks for p in set_config.data.get(t, {}).values() if p]


def probe_command(launch, probe_args):
  """argv that starts host_probe once on every host of the launch."""
  probe = ["-m", "tf_gp2bm.driver.host_probe", *probe_args]
  if launch.kind == "hosts":
    one_each = ",".join(f"{h}:1" for h in launch.host_names)
    return ["horovodrun", "-np", str(launch.num_hosts), "-H", one_each, *launch.hvd_args, sys.executable, *probe]
  if launch.kind == "slurm":
    return srun.step_command(launch, [sys.executable, *probe], ntasks_per_node=1)
  return [sys.executable, *probe]


def run_on_every_host(launch, probe_args, timeout=PROBE_TIMEOUT_S, cmd=None):
  """{host: (report dict, arrival time)} and the launcher's output (for the error message)."""
  cmd = cmd or probe_command(launch, probe_args)
  env = launch_mod.tool_env(dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1"))
  try:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=repo_root(), start_new_session=True)
  except FileNotFoundError:
    return {}, f"{cmd[0]} not found on PATH"
  reports, lines = {}, []
  timer = threading.Timer(timeout, proc.kill)
  timer.start()
  try:
    for line in proc.stdout:
      arrived = time.time()
      lines.append(line.rstrip())
      if host_probe.MARKER in line:
        report = json.loads(line.split(host_probe.MARKER, 1)[1])
        reports[_host_of(launch, report)] = (report, arrived)
    proc.wait()
  finally:
    timer.cancel()
  tail = "\n".join(l for l in lines if host_probe.MARKER not in l)[-1500:]
  if proc.returncode == -9:
    tail = f"timed out after {timeout}s\n{tail}"
  return reports, tail


def _host_of(launch, report):
  # Ranks map to the launch's host names (localhost and 127.0.0.1 are two hosts to Horovod, one to gethostname).
  rank = report.get("rank")
  names = launch.host_names
  if launch.kind in ("hosts", "slurm") and rank is not None and int(rank) < len(names):
    return names[int(rank)]
  return report["host"] if launch.kind != "local" else "localhost"


def preflight(launch, set_config):
  """[(check, status, detail)] for every host of the launch (set_config: the SetConfig); FAIL rows stop the set."""
  root = set_config.results_root
  paths = data_paths(set_config)
  marker = None
  if root and launch.num_hosts > 1:
    os.makedirs(root, exist_ok=True)
    fd, marker = tempfile.mkstemp(prefix=".gp2bm_shared_", dir=root)
    os.close(fd)
  args = ["facts"] + [f"--path={p}" for p in paths] + ([f"--shared_marker={marker}"] if marker else [])
  here = host_probe.source_digest()  # taken as the probes start: the code the set's runs will use
  try:
    reports, output = run_on_every_host(launch, args)
  finally:
    if marker:
      os.remove(marker)
  names = launch.host_names
  missing = [h for h in names if h not in reports]
  if missing:
    return [("hosts answer", "FAIL", f"no answer from {', '.join(missing)} ({launch.describe()}): "
             f"{_last_lines(output)}")]
  ordered = [(h, reports[h][0], reports[h][1]) for h in names]
  rows = [("hosts answer", "PASS", f"{len(names)}: {', '.join(names)}")]
  rows.append(_same(ordered, "versions", lambda r: dict(r["versions"], python=r["python"])))
  rows.append(_same_source(ordered, here))
  rows += _gpus(launch, ordered)
  rows += _data(ordered, paths)
  rows.append(_clock(ordered))
  rows.append(_shm(launch, ordered))
  if marker:
    blind = [h for h, r, _ in ordered if not r["shared_results"]]
    rows.append(("results folder shared", "FAIL" if blind else "PASS",
                 f"{', '.join(blind)} cannot see {root}: the set folder (flagfiles, run folders) must be on a "
                 "filesystem every host mounts at the same path" if blind else f"{root} visible on every host"))
  return rows


def _same(ordered, what, key):
  ref_host, ref, _ = ordered[0]
  ref_value = key(ref)
  diffs = []
  for host, report, _ in ordered[1:]:
    value = key(report)
    if value != ref_value:
      changed = {k: v for k, v in value.items() if ref_value.get(k) != v} if isinstance(value, dict) else value
      was = {k: ref_value.get(k) for k in changed} if isinstance(value, dict) else ref_value
      diffs.append(f"{host} has {changed} where {ref_host} has {was}")
  if diffs:
    return (f"same {what} on every host", "FAIL", "; ".join(diffs))
  return (f"same {what} on every host", "PASS", _brief(ref_value))


def _brief(value):
  if isinstance(value, dict):
    return ", ".join(f"{k} {v}" for k, v in value.items())
  return str(value)


def _same_source(ordered, here):
  name = "same source on every host"
  diffs = [f"{h} runs source {r['source']}" for h, r, _ in ordered if r["source"] != here]
  if diffs:
    return (name, "FAIL", f"{'; '.join(diffs)}, the driver's is {here}: copy the same commit (tf_gp2bm/, flags/) "
                          "to every host")
  return (name, "PASS", f"digest {here} (tf_gp2bm/, flags/)")


def _gpus(launch, ordered):
  slots = dict(launch.hosts) or {ordered[0][0]: launch.np}
  if not any(r["gpus"] for _, r, _ in ordered):
    errors = [f"{h}: {r['error']}" for h, r, _ in ordered if r["error"]]
    return [("GPUs per host", "N/A", "no GPU on any host (CPU run)"),
            ("TensorFlow + Horovod on every host", "FAIL" if errors and launch.np > 1 else "PASS",
             "; ".join(errors) or "import fine")]
  short = [f"{h} has {r['gpus']} GPU(s) for {slots.get(h, 1)} process(es)"
           for h, r, _ in ordered if r["gpus"] < slots.get(h, 1)]
  rows = [("GPUs per host", "FAIL" if short else "PASS",
           "; ".join(short) or ", ".join(f"{h}: {r['gpus']}" for h, r, _ in ordered))]
  bad = []
  for h, r, _ in ordered:
    if r["error"]:
      bad.append(f"{h}: TensorFlow/Horovod do not import ({r['error']})")
    elif r["gpus"] and not r["tf_gpus"]:
      bad.append(f"{h}: nvidia-smi shows {r['gpus']} GPU(s) but TensorFlow sees none (CPU-only TensorFlow: rerun "
                 "scripts/setup.sh, it installs tensorflow[and-cuda] on a GPU node)")
    elif r["gpus"] and launch.np > 1 and not r["nccl"]:
      bad.append(f"{h}: Horovod was built without NCCL, so GPU all-reduces would go through host memory (rerun "
                 "scripts/setup.sh on a GPU node: it builds Horovod against pip's NCCL)")
  rows.append(("TensorFlow GPUs + Horovod NCCL", "FAIL" if bad else "PASS", "; ".join(bad) or "every host"))
  return rows


def _data(ordered, paths):
  rows = []
  for p in paths:
    missing = [h for h, r, _ in ordered if r["data"].get(p) is None]
    ref_host, ref, _ = next(((h, r, t) for h, r, t in ordered if r["data"].get(p)), ordered[0])
    differ = [h for h, r, _ in ordered if r["data"].get(p) and r["data"][p] != ref["data"][p]]
    detail = []
    if missing:
      detail.append(f"missing on {', '.join(missing)}")
    if differ:
      detail.append(f"{', '.join(differ)} hold(s) other data ({', '.join(ordered_data(ordered, p, differ))}) than "
                    f"{ref_host} ({ref['data'][p]})")
    rows.append((f"data {p}", "FAIL" if detail else "PASS", "; ".join(detail) or f"identical ({ref['data'][p]})"))
  return rows


def ordered_data(ordered, path, hosts):
  return [f"{h}: {r['data'][path]}" for h, r, _ in ordered if h in hosts]


def _clock(ordered):
  offsets = {h: r["time"] - arrived for h, r, arrived in ordered}
  worst_host = max(offsets, key=lambda h: abs(offsets[h]))
  worst = offsets[worst_host]
  status = "FAIL" if abs(worst) > CLOCK_FAIL_S else ("WARN" if abs(worst) > CLOCK_WARN_S else "PASS")
  detail = ", ".join(f"{h} {o:+.3f}s" for h, o in offsets.items())
  if status != "PASS":
    detail += f"; {worst_host} is {worst:+.2f}s off this machine's clock: sync the clocks (chrony/NTP)"
  return ("clock offset to the driver", status, detail)


def _shm(launch, ordered):
  low = [f"{h} {r['shm_free_gib']} GiB" for h, r, _ in ordered
         if launch.np > 1 and (r["shm_free_gib"] or 0) < 1]
  return ("/dev/shm free on every host", "FAIL" if low else "PASS",
          f"need >= 1 GiB for NCCL/Horovod buffers: {', '.join(low)}" if low
          else ", ".join(f"{h} {r['shm_free_gib']} GiB" for h, r, _ in ordered))


_NOISE = re.compile(r"^(\s|Traceback|\d{4}-\d\d-\d\d |To enable the following|WARNING: All log messages|[IWE]\d{4} )")


def _last_lines(text, n=4):
  """The launcher's own words (horovodrun's 'ssh not successful for host X', srun's errors), no tracebacks."""
  lines = [l for l in (text or "").splitlines() if l.strip() and not _NOISE.match(l)]
  return " | ".join(lines[-n:]) or "no output"


def drop_caches_detail(launch):
  """(dropped on every host, detail naming any host where it failed)."""
  if launch.kind == "local":
    result = host_probe.drop_caches()
    return result["dropped"], result["detail"]
  cmd = None
  if launch.kind == "slurm":
    # On the node itself, never inside a container: only the host's root can drop its page cache.
    n = launch.num_hosts
    # The ranks' nodes exclude those left to the tf.data service; the service's own are named.
    exclude = [w for w in launch.hvd_args if w.startswith(("--exclude=", "--nodelist="))]
    cmd = ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", *exclude, sys.executable, "-m",
           "tf_gp2bm.driver.host_probe", "drop_caches"]
  reports, output = run_on_every_host(launch, ["drop_caches"], timeout=300, cmd=cmd)
  failed = [f"{h}: {reports[h][0]['detail']}" if h in reports else f"{h}: no answer ({_last_lines(output, 2)})"
            for h in launch.host_names if h not in reports or not reports[h][0]["dropped"]]
  if failed:
    return False, "page cache NOT dropped on " + "; ".join(failed)
  return True, f"page cache dropped on {launch.num_hosts} hosts"


def drop_caches(launch):
  return drop_caches_detail(launch)[0]
