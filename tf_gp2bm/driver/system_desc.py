"""The MLPerf system description (<org>/systems/<system>.json), filled from the host where it can be detected.

The checker (mlperf_logging.system_desc_checker) requires these 33 fields; it joins some of them with ",", so
every value is written as a string. What cannot be read from the host (cooling, interconnect topology, ...) comes
from `--system_field key=value` flags or a `--system_json` file; official mode refuses to go on while any of them
is missing (see missing_fields), the demo fills them with "n/a (demo)".
"""
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess

FIELDS = [
    "submitter", "division", "status", "system_name", "number_of_nodes", "host_processors_per_node",
    "host_processor_model_name", "host_processor_core_count", "host_processor_vcpu_count",
    "host_processor_frequency", "host_processor_caches", "host_processor_interconnect", "host_memory_capacity",
    "host_storage_type", "host_storage_capacity", "host_networking", "host_networking_topology",
    "host_memory_configuration", "accelerators_per_node", "accelerator_model_name",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_memory_capacity", "accelerator_interconnect",
    "accelerator_interconnect_topology", "cooling", "hw_notes", "framework", "other_software_stack",
    "operating_system", "sw_notes",
]
RDI = "Research, Development, or Internal (RDI)"
STATUSES = ["Available on-premise", "Available cloud", RDI, "Preview"]
# The mllog submission_status value of each status (ruleset 4.0.0).
MLLOG_STATUS = {"Available on-premise": "onprem", "Available cloud": "cloud", RDI: "research", "Preview": "preview"}
# Free-text fields the vendor may leave empty without it being an error.
OPTIONAL = {"hw_notes", "sw_notes"}
DEMO_FILL = "n/a (demo)"


def _read(path):
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return ""


def _cmd(args):
  try:
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout if out.returncode == 0 else None


def cpu_info():
  text = _read("/proc/cpuinfo")
  models = re.findall(r"^model name\s*:\s*(.+)$", text, re.M)
  sockets = set(re.findall(r"^physical id\s*:\s*(\d+)$", text, re.M))
  cores = re.findall(r"^cpu cores\s*:\s*(\d+)$", text, re.M)
  max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
  mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)$", text, re.M)
  freq = f"{int(max_khz) // 1000} MHz" if max_khz.isdigit() else (f"{float(mhz[0]):.0f} MHz" if mhz else "")
  caches = []
  for line in (_cmd(["lscpu"]) or "").splitlines():
    m = re.match(r"\s*(L1d|L1i|L2|L3) cache:\s*(.+)$", line)
    if m:
      caches.append(f"{m.group(1)} {m.group(2).strip()}")
  return {"model": models[0].strip() if models else platform.processor(),
          "sockets": len(sockets) or 1, "cores_per_socket": int(cores[0]) if cores else None,
          "vcpus": os.cpu_count(), "frequency": freq, "caches": ", ".join(caches)}


def memory_gb():
  m = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
  return int(m.group(1)) / 1024 ** 2 if m else None


def gpu_info():
  """[{name, memory_total_mib, memory_free_mib, driver, max_sm_mhz}] from nvidia-smi; [] when there is none."""
  out = _cmd(["nvidia-smi", "--query-gpu=name,memory.total,memory.free,driver_version,clocks.max.sm",
              "--format=csv,noheader,nounits"])
  gpus = []
  for line in (out or "").strip().splitlines():
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 5:
      gpus.append(dict(zip(["name", "memory_total_mib", "memory_free_mib", "driver", "max_sm_mhz"], parts)))
  return gpus


def cuda_version():
  """CUDA version the driver supports (nvidia-smi banner), or the toolkit's (nvcc); None when neither exists."""
  m = re.search(r"CUDA Version:\s*([\d.]+)", _cmd(["nvidia-smi"]) or "")
  if m:
    return m.group(1)
  m = re.search(r"release ([\d.]+)", _cmd(["nvcc", "--version"]) or "")
  return m.group(1) if m else None


def package_version(name):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def operating_system():
  m = re.search(r'^PRETTY_NAME="?([^"\n]+)', _read("/etc/os-release"), re.M)
  return f"{m.group(1) if m else platform.system()} (kernel {platform.release()})"


def detect(storage_path="."):
  """Fields that can be read from this host; the rest stay absent."""
  storage_path = os.path.abspath(storage_path)
  while not os.path.exists(storage_path):  # the results folder may not exist yet: measure its filesystem
    storage_path = os.path.dirname(storage_path)
  cpu, gpus, mem = cpu_info(), gpu_info(), memory_gb()
  d = {
      "number_of_nodes": "1",
      "host_processors_per_node": str(cpu["sockets"]),
      "host_processor_model_name": cpu["model"],
      "host_processor_vcpu_count": str(cpu["vcpus"]),
      "host_storage_capacity": f"{shutil.disk_usage(storage_path).total / 1e12:.2f} TB",
      "accelerators_per_node": str(len(gpus)),
      "framework": f"TensorFlow {package_version('tensorflow')}",
      "operating_system": operating_system(),
  }
  if cpu["cores_per_socket"]:
    d["host_processor_core_count"] = str(cpu["cores_per_socket"])
  if cpu["frequency"]:
    d["host_processor_frequency"] = cpu["frequency"]
  if cpu["caches"]:
    d["host_processor_caches"] = cpu["caches"]
  if mem:
    d["host_memory_capacity"] = f"{mem:.0f} GB"
  if gpus:
    d["accelerator_model_name"] = gpus[0]["name"]
    d["accelerator_memory_capacity"] = f"{int(gpus[0]['memory_total_mib']) / 1024:.0f} GB"
    if gpus[0]["max_sm_mhz"].isdigit():
      d["accelerator_frequency"] = f"{gpus[0]['max_sm_mhz']} MHz"
  else:
    # No accelerator is a true statement about the host (the CPU demo), not a missing answer.
    for k in ("accelerator_model_name", "accelerator_host_interconnect", "accelerator_frequency",
              "accelerator_on-chip_memories", "accelerator_memory_configuration", "accelerator_memory_capacity",
              "accelerator_interconnect", "accelerator_interconnect_topology"):
      d[k] = "N/A"
  stack = [f"{p} {package_version(p)}" for p in ("tf-keras", "tf-models-official", "horovod", "mlperf-logging")
           if package_version(p)]
  if gpus:
    stack = [f"NVIDIA driver {gpus[0]['driver']}", f"CUDA {cuda_version()}"] + stack
  d["other_software_stack"] = ", ".join(stack)
  return d


def parse_field_flags(items):
  """`key=value` strings from --system_field into a dict, naming the bad one."""
  out = {}
  for item in items or []:
    key, sep, value = item.partition("=")
    if not sep or key not in FIELDS:
      raise ValueError(f"--system_field {item!r}: expected key=value with key one of the 33 system fields")
    out[key] = value
  return out


def build(org, system_name, status, overrides, demo=False, storage_path="."):
  """The full description: detected values, then the vendor's overrides (which win)."""
  if status not in STATUSES:
    raise ValueError(f"--status {status!r}: must be one of {STATUSES}")
  d = {"submitter": org, "division": "closed", "status": status, "system_name": system_name,
       "hw_notes": "", "sw_notes": "tf_gp2bm driver; the flagfiles used are in benchmarks/<task>/implementations/"
       "tf_gp2bm/flags_used"}
  d.update(detect(storage_path))
  d.update(overrides)
  for k in FIELDS:
    if demo and k not in d:
      d[k] = DEMO_FILL
  return {k: str(d[k]) for k in FIELDS if k in d}


def missing_fields(desc):
  """Required fields with no value: official mode asks for them by flag before any timed run."""
  return [k for k in FIELDS if k not in OPTIONAL and not str(desc.get(k, "")).strip()]
