"""What a kernel module costs at full size: each task's real train step compiled by XLA with the module and with
the defaults, compared by XLA's own buffer assignment (`kernel_check --full_size`).

Each compile runs in a child process (`tf_gp2bm.bench --export_only --export_compiled`, the step bench times and
exports) with XLA_FLAGS=--xla_dump_to, and the step's `*buffer-assignment.txt` is read back: every allocation with
its size and kind. The compile is for this machine's backend (CPU on a CPU host, the GPU in a GPU build), so the
figures are that backend's buffer assignment: the comparison with the defaults, not the absolute, is the point.
No TensorFlow here (the children load it).
"""
import dataclasses
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

from tf_gp2bm import files
from tf_gp2bm.errors import InputError

# --full_size=NAME: the flagfile flags/<task>/<system>.flags of every task, at its per-replica batch (the flagfile's
# --global_batch_size over the replicas it is written for); the step is compiled as one replica at that batch.
SIZES = {"closed": ("8xgpu", 8), "smoke": ("smoke", 1)}

# A buffer-assignment line: "allocation 12: size 4000000, parameter 1, shape |f32[1000,1000]| ..., maybe-live-out:"
_ALLOCATION = re.compile(r"^allocation \d+: size (\d+), (.*)$")
KINDS = ("temp", "constant", "output", "parameter")


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """Bytes of one compiled step by kind of allocation. temp: XLA's scratch (on CPU one preallocated block);
  output: results that are not parameters aliased in place; parameter: the step's inputs (variables, slots,
  batch), the same whatever the kernels."""
  temp: int
  constant: int
  output: int
  parameter: int

  @property
  def step(self):
    """What a kernel can change: temp + constants + outputs."""
    return self.temp + self.constant + self.output


def parse_buffer_assignment(text):
  """StepMemory of one `*buffer-assignment.txt` (thread-local allocations, on the stack of one thread, left
  out)."""
  sizes = dict.fromkeys(KINDS, 0)
  for line in text.splitlines():
    match = _ALLOCATION.match(line)
    if not match:
      continue
    size, what = int(match.group(1)), match.group(2)
    if "thread-local" in what:
      continue
    if re.match(r"parameter \d+", what):
      kind = "parameter"
    elif what.startswith("constant"):
      kind = "constant"
    elif what.startswith("output shape") or "maybe-live-out" in what:
      kind = "output"
    else:
      kind = "temp"
    sizes[kind] += size
  return StepMemory(**sizes)


def step_memory(dump_dir, function="replica_step"):
  """StepMemory of the train step's module in an XLA dump folder (the largest, if it was compiled more than
  once); None when the dump holds none."""
  found = [parse_buffer_assignment(open(path).read())
           for path in glob.glob(os.path.join(dump_dir, f"*{function}*buffer-assignment.txt"))]
  return max(found, key=lambda m: m.step + m.parameter, default=None)


def flagfile(size, task):
  system, _ = SIZES[size]
  return os.path.join(files.flags_dir(), task, f"{system}.flags")


def per_replica_batch(size, task):
  """The flagfile's --global_batch_size (the last one given) over the replicas it is written for."""
  path = flagfile(size, task)
  if not os.path.exists(path):
    raise InputError(f"--full_size={size}: no flagfile {path} for --task={task}")
  with open(path) as f:
    given = re.findall(r"^--global_batch_size=(\d+)\s*$", f.read(), re.M)
  if not given:
    raise InputError(f"{path}: no --global_batch_size=N line (kernel_check --full_size needs the batch)")
  replicas = SIZES[size][1]
  if int(given[-1]) % replicas:
    raise InputError(f"{path}: --global_batch_size={given[-1]} is not a multiple of its {replicas} replicas")
  return int(given[-1]) // replicas


@dataclasses.dataclass
class Compile:
  """One child compile: its StepMemory (None if it failed or was skipped), wall seconds, peak RSS bytes, and
  `skipped` (the step uses none of the module's hot spots) or `error` (the tail of its output)."""
  memory: object = None
  seconds: float = 0.0
  peak_rss: int = 0
  skipped: bool = False
  error: str = ""


def compile_step(size, task, kernels=None):
  """Compiles task's train step at `size` (with the `kernels` module, or the defaults) in a child process."""
  with tempfile.TemporaryDirectory(prefix="kernel_check_") as tmp:
    dump = os.path.join(tmp, "xla")
    argv = [sys.executable, "-m", "tf_gp2bm.bench", f"--task={task}", f"--flagfile={flagfile(size, task)}",
            f"--global_batch_size={per_replica_batch(size, task)}", "--xla", "--export_only",
            f"--export_hlo={os.path.join(tmp, 'step')}", "--export_compiled"]
    argv += [f"--kernels={kernels}"] if kernels else []
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump} --xla_dump_hlo_as_text".strip()
    env = dict(os.environ, XLA_FLAGS=xla_flags, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    start = time.perf_counter()
    with open(os.path.join(tmp, "log"), "w+") as log:
      child = subprocess.Popen(argv, cwd=files.repo_root(), env=env, stdout=log, stderr=subprocess.STDOUT)
      _, status, usage = os.wait4(child.pid, 0)  # wait4: the child's own peak RSS
      child.returncode = os.waitstatus_to_exitcode(status)
      log.seek(0)
      output = log.read()
    result = Compile(seconds=time.perf_counter() - start, peak_rss=usage.ru_maxrss * 1024)
    if child.returncode == 0 and "uses none of the replaced hot spots" in output:
      result.skipped = True
    elif child.returncode == 0:
      result.memory = step_memory(dump)
      if result.memory is None:
        result.error = "the compile wrote no buffer assignment for the step"
    else:
      why = "killed (out of memory?)" if child.returncode == -9 else f"exit {child.returncode}"
      tail = [line for line in output.splitlines() if line.strip() and not line.startswith(("WARNING", "I0000"))]
      result.error = f"the compile failed ({why}): " + " | ".join(tail[-3:])[-400:]
    return result


@dataclasses.dataclass
class Row:
  task: str
  step: str        # what was compiled: flagfile and per-replica batch
  defaults: Compile
  module: Compile

  def ratio(self):
    if self.defaults.memory and self.module.memory:
      return self.module.memory.step / max(self.defaults.memory.step, 1)
    return None

  def extra(self):
    """The module's step bytes over the defaults', as a fraction of the step's parameter bytes (None: no
    figures)."""
    if self.defaults.memory and self.module.memory:
      d, m = self.defaults.memory, self.module.memory
      return (m.step - d.step) / max(d.parameter, 1)
    return None

  def ok(self, margin):
    """Within `margin`: the module's step needs at most margin x the parameter bytes more than the defaults'."""
    if self.module.skipped:
      return True
    extra = self.extra()
    return extra is not None and extra <= margin


def compare(size, tasks, module, out=print):
  """A Row per task: the step compiled with `module` and, unless the step uses none of its hot spots, with the
  defaults."""
  rows = []
  for task in tasks:
    step = f"{os.path.relpath(flagfile(size, task), files.repo_root())} at batch {per_replica_batch(size, task)}"
    out(f"compiling the {task} step ({step}) with {module} ...")
    mine = compile_step(size, task, module)
    theirs = Compile(skipped=True)
    if not mine.skipped:
      out(f"compiling the {task} step ({step}) with the defaults ...")
      theirs = compile_step(size, task)
    rows.append(Row(task, step, theirs, mine))
  return rows


def _gb(n):
  """Bytes for people: 3 significant figures in kB, MB or GB."""
  scale, unit = next(((s, u) for s, u in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")) if abs(n) >= s), (1, "B"))
  return f"{n / scale:.3g} {unit}"


def table(rows, margin):
  """The comparison as text: one line per task, then the parts, then what a failing row means."""
  header = ("task", "step", "defaults", "module", "ratio", "extra / parameters", "")
  lines, notes = [header], []
  for r in rows:
    if r.module.skipped:
      lines.append((r.task, r.step, "-", "-", "-", "-", "not used (no replaced hot spot in this step)"))
      continue
    d, m = r.defaults.memory, r.module.memory
    ratio, extra = r.ratio(), r.extra()
    verdict = "ok" if r.ok(margin) else f"MORE MEMORY (> {margin:.0%})"
    if ratio is None:
      notes += [f"{r.task}: {side} {c.error}" for side, c in (("defaults:", r.defaults), ("module:", r.module))
                if c.error]
      verdict = f"FAILS [{len(notes)}]"
    lines.append((r.task, r.step, _gb(d.step) if d else "-", _gb(m.step) if m else "-",
                  f"{ratio:.3f}" if ratio is not None else "-", f"{extra:+.1%}" if extra is not None else "-",
                  verdict))
  widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
  text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
  text.insert(1, "  ".join("-" * w for w in widths))
  for r in rows:
    if r.defaults.memory and r.module.memory:
      d, m = r.defaults.memory, r.module.memory
      text.append(f"{r.task}: temp {_gb(d.temp)} -> {_gb(m.temp)}, constants {_gb(d.constant)} -> "
                  f"{_gb(m.constant)}, outputs {_gb(d.output)} -> {_gb(m.output)}; parameters (variables, slots, "
                  f"batch) {_gb(d.parameter)} -> {_gb(m.parameter)}")
    for side, c in (("defaults'", r.defaults), ("module's", r.module)):
      if c.seconds:
        what = "build and trace (not compiled)" if c.skipped else "compile"
        text.append(f"{r.task}: the {side} {what} took {c.seconds:.0f} s, peak RSS {_gb(c.peak_rss)}")
  text += [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]
  return "\n".join(text)
