r"""Parity check of a vendor kernel module against the defaults: `python -m tf_gp2bm.kernel_check --kernels=MODULE`.

For every hot spot the module replaces: forward outputs and gradients (with respect to every float input) on
contract-shaped inputs at each call site's dtypes, and the replacement compiled with jit_compile; for the optimizer
hot spots, several update steps on a model-like variable list. Errors are relative to the norm of the default's
result (for a gradient: to the larger of its own norm and 1e-3 of the whole gradient's, so an exactly-zero default
gradient does not read as 100 % wrong). Prints a table; exit 0 when everything is within tolerance, 1 when
something differs, 2 for a --kernels module that cannot be loaded or bad flags.

With --full_size (closed: flags/<task>/8xgpu.flags at the per-GPU batch; smoke: the tiny smoke.flags models) it also
compiles the real train step of each task whose step uses the module's hot spots, with the module and with the
defaults, and compares XLA's buffer assignment of the two (temp + constants + outputs): exit 1 when the module's step
needs more than the defaults' by over --memory_margin of the step's parameter bytes (tf_gp2bm.kernels.memory).
"""
import argparse
import sys

import tf_gp2bm  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tf_gp2bm import errors, files, kernels, tasks
from tf_gp2bm.errors import InputError
from tf_gp2bm.kernels import memory

# Relative error allowed between a replacement and the default, by the least precise float dtype of a case
# (forward outputs; gradients get twice as much).
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2, "float16": 2e-3}
PRECISIONS = ("fp32", "bf16", "fp16")
# --full_size: how much more memory (temp + constants + outputs of the compiled step) the module's step may need than
# the defaults', as a fraction of the step's parameter bytes (variables, optimizer slots, batch). Against the
# parameters, a cost that grows with the model reads the same at every size and backend: the vendor's per-element
# int32 segment ids in a multi-tensor LAMB add 4 bytes per variable element, a third of LAMB's parameter bytes
# (1.3 GB at BERT-large, yet 2 % of the 67 GB the CPU assigns that step). 10 % lets a kernel add workspace of
# 400 MB at BERT-large and stops anything that keeps a model-sized buffer (1.2 bytes per element or more).
MEMORY_MARGIN = 0.10


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m tf_gp2bm.kernel_check", description=__doc__.splitlines()[0])
  parser.add_argument("--kernels", required=True, help="the vendor kernel module, as given to tf_gp2bm.train")
  parser.add_argument("--precision", default="all", choices=PRECISIONS + ("all",),
                      help="compute precision whose call-site dtypes to check (default: all three)")
  parser.add_argument("--steps", type=int, default=5, help="update steps for the optimizer hot spots")
  parser.add_argument("--xla", default=True, action=argparse.BooleanOptionalAction,
                      help="also compile each replacement with jit_compile (what a --xla run needs)")
  parser.add_argument("--full_size", nargs="?", const="closed", default=None, choices=sorted(memory.SIZES),
                      help="also compile each task's real train step with the module and with the defaults and "
                      "compare their memory (XLA's buffer assignment on this machine's backend); closed (the "
                      "default when bare): flags/<task>/8xgpu.flags at the per-GPU batch; smoke: the tiny models")
  parser.add_argument("--memory_margin", type=float, default=MEMORY_MARGIN,
                      help="--full_size: the module's step may need this much more than the defaults', as a "
                      f"fraction of the step's parameter bytes (default {MEMORY_MARGIN})")
  parser.add_argument("--tasks", default=None,
                      help="--full_size: comma-separated tasks to compile (default: every registered task)")
  parser.add_argument("--report", default=None,
                      help="also write the printed report to this file (keep it with the run and the submission)")
  return parser.parse_args(argv)


def _write_report(path, text):
  with files.atomic_output(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


def _flag_problem(args, full_size_tasks):
  """What is wrong with the flags (None: nothing), before TensorFlow loads."""
  if args.steps < 1:
    return "--steps must be at least 1"
  if args.memory_margin < 0:
    return f"--memory_margin must be at least 0, not {args.memory_margin}"
  if args.tasks and not args.full_size:
    return "--tasks selects the steps --full_size compiles; give --full_size too"
  unknown = sorted(set(full_size_tasks) - set(tasks.names()))
  if unknown:
    return f"--tasks: unknown {', '.join(unknown)}; registered: {', '.join(tasks.names())}"
  try:
    for task in full_size_tasks if args.full_size else ():
      memory.per_replica_batch(args.full_size, task)
  except InputError as e:
    return str(e)
  return None


def main(argv=None):
  args = parse_args(argv)
  full_size_tasks = args.tasks.split(",") if args.tasks else tasks.names()
  problem = _flag_problem(args, full_size_tasks)
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  from tf_gp2bm.kernels import parity  # TensorFlow loads here, after the flags are checked
  try:
    replaced = kernels.load_plugin(args.kernels)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  precisions = PRECISIONS if args.precision == "all" else (args.precision,)
  print(f"kernel_check: {args.kernels} replaces {', '.join(replaced)}; precisions {', '.join(precisions)}; "
        f"relative tolerance {', '.join(f'{d} {t:.0e}' for d, t in TOLERANCE.items())}", flush=True)
  rows = []
  for name in replaced:
    if kernels.registry.hot_spot(name).optimizer:
      rows += parity.check_optimizer(name, args.steps, TOLERANCE["float32"], args.xla)
    else:
      for precision in precisions:
        rows += parity.check_forward(name, precision, TOLERANCE, args.xla)
  failed = [r for r in rows if not r.ok]
  summary = (f"{len(rows) - len(failed)}/{len(rows)} checks within tolerance" +
             (f"; {len(failed)} differ from the defaults" if failed else ""))
  print(parity.table(rows))
  print(summary, flush=True)
  report = f"{parity.table(rows)}\n{summary}\n"
  command = (f"kernel_check --kernels={args.kernels} --precision={args.precision} --steps={args.steps} "
             f"--{'' if args.xla else 'no-'}xla")
  too_big = []
  if args.full_size:
    command += f" --full_size={args.full_size} --memory_margin={args.memory_margin}"
    text, too_big = full_size(args, full_size_tasks)
    print(text)
    report += text + "\n"
  if args.report:
    _write_report(args.report, f"{command}\n{report}")
  return 1 if failed or too_big else 0


def full_size(args, task_names):
  """(the memory comparison as text, the rows over the margin or failed)."""
  rows = memory.compare(args.full_size, task_names, args.kernels, out=lambda m: print(m, flush=True))
  over = [r for r in rows if not r.ok(args.memory_margin)]
  text = (f"\nfull size ({args.full_size}): each step compiled by XLA for this machine's backend; bytes are "
          f"temp + constants + outputs of XLA's buffer assignment for that backend (a GPU build compiles for the "
          f"GPU): compare them, do not read them as a GPU's\n{memory.table(rows, args.memory_margin)}\n")
  text += (f"{len(rows) - len(over)}/{len(rows)} steps within the defaults' memory + {args.memory_margin:.0%} of "
           f"their parameter bytes" +
           (f"; {', '.join(r.task for r in over)} over it or failed" if over else ""))
  return text, over


if __name__ == "__main__":
  sys.exit(main())
