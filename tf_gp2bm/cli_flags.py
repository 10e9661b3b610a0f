"""Flags shared by tf_gp2bm.train and tf_gp2bm.bench, their --help, and flag errors as exit code 2.

TensorFlow-free on purpose: `--help` and every flag error answer before TensorFlow or the model garden load.
Each task adds its own flags from its TF-free config module (see tasks/).
"""
import sys
import textwrap

from absl import flags

from tf_gp2bm import errors, tasks
from tf_gp2bm.runtime import DISTRIBUTIONS

flags.DEFINE_enum("task", None, tasks.names(), "Benchmark to train (required).")
flags.DEFINE_string("data_dir", None, "Training data: the TFRecords and manifest.json that data_prep wrote.")
flags.DEFINE_string("output_dir", None, "Run directory for mlperf.log, run.json, flags.txt and tensorboard/ (required; "
                    "must not hold a previous run's mlperf.log).")
flags.DEFINE_integer("seed", None, "Random seed; drawn from os.urandom when not given (always logged).",
                     lower_bound=0, upper_bound=2 ** 31 - 1)
flags.DEFINE_enum("distribution", "auto", DISTRIBUTIONS,
                  "auto = horovod under horovodrun, mirrored with several local GPUs, else none (one device).")
flags.DEFINE_enum("precision", "bf16", ["fp16", "bf16", "fp32"], "Compute precision (fp16 adds dynamic loss "
                  "scaling).")
flags.DEFINE_bool("xla", True, "Compile the whole train step with XLA.")
flags.DEFINE_integer("steps_per_loop", 100, "Train steps per host call; progress, TensorBoard and the NaN/Inf guard "
                     "read the device once per loop.", lower_bound=1)
flags.DEFINE_string("kernels", None, "Module that registers vendor kernels (see docs/vendor_kernels.md); none = "
                    "the default ops.")
flags.DEFINE_bool("deterministic", False, "Same seed, same trajectory: op determinism (XLA included) and ordered "
                  "input pipelines, to compare a run with vendor kernels against a default run (slower).")
flags.DEFINE_bool("cache_clear", False, "Whether the page cache was dropped before this run (logged as is).")
flags.DEFINE_bool("closed", True, "Closed division: enforce its settings and log submission_division closed; "
                  "--noclosed (demo and smoke configs) logs open.")
flags.DEFINE_string("submission_org", "GP2BM-vendor", "Organization logged as submission_org.")
flags.DEFINE_string("submission_platform", "1xNODE", "System name logged as submission_platform.")
flags.DEFINE_enum("submission_status", "onprem", ["onprem", "cloud", "preview", "research"],
                  "Logged as submission_status (the 4.0.0 ruleset's values).")
flags.DEFINE_bool("weights_digest", False, "Every rank writes a sha256 of its final weights (replica-consistency "
                  "checks).")
flags.DEFINE_string("config_name", "custom", "Name of the flagfile's configuration (recorded in run.json).")
flags.DEFINE_string("profile_steps", None, "A,B: write a TensorFlow profiler trace of train steps A to B into "
                    "OUTPUT_DIR/tensorboard (rank 0); none = no trace.")


def parse_profile_steps(value):
  """'A,B' -> (A, B) with 1 <= A <= B, or None when not set; raises ValueError otherwise."""
  if value is None:
    return None
  parts = value.split(",")
  if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
    raise ValueError("expected two step numbers A,B")
  first, last = (int(p) for p in parts)
  if not 1 <= first <= last:
    raise ValueError("expected 1 <= A <= B")
  return first, last


def _profile_steps_ok(value):
  try:
    parse_profile_steps(value)
  except ValueError:
    return False
  return True


flags.register_validator("profile_steps", _profile_steps_ok, message="expected two step numbers A,B with 1 <= A <= B")
tasks.define_all_flags()

MAIN_FLAGS = ("task", "flagfile", "data_dir", "output_dir", "global_batch_size", "precision", "distribution",
              "kernels", "seed")
_HELP_ARGS = {"-h", "-?", "-help", "--help", "--helpshort", "--helpfull"}


def _default(flag):
  value = flag.default
  if value is None:
    return "none"
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (list, tuple)):
    return ",".join(map(str, value)) or "empty"
  return str(value)


def _entry(name, text):
  return f"  {name}\n" + textwrap.fill(text, width=110, initial_indent=" " * 4, subsequent_indent=" " * 4,
                                       break_on_hyphens=False, break_long_words=False)


def _describe(flag):
  text = flag.help
  if flag.flag_type() == "bool":
    name = f"--[no]{flag.name}"
  elif getattr(flag.parser, "enum_values", None):
    name = f"--{flag.name}={'|'.join(flag.parser.enum_values)}"
    text = text.split(">: ", 1)[-1] if text.startswith("<") else text  # absl prefixes the choices again
  else:
    name = f"--{flag.name}=<{flag.flag_type()}>"
  return _entry(name, f"{text} (default: {_default(flag)})")


# absl handles --flagfile while parsing, outside the flag registry.
_FLAGFILE_HELP = _entry("--flagfile=<file>", "Read flags from this file, one --name=value per line "
                        "(flags/<task>/*.flags; flags after it on the command line override it). (default: none)")


def _group_title(module):
  if module.startswith("tf_gp2bm.tasks.") and module.count(".") >= 3:
    return f"flags of the {module.split('.')[2]} task"
  if module == "tf_gp2bm.tasks.base":
    return "flags every task reads"
  if module == __name__:
    return "more trainer flags"
  return f"flags of {module}"


def help_text(doc, main_flags=MAIN_FLAGS):
  """The main flags first, then every other flag of this project grouped by the module that defines it."""
  fv = flags.FLAGS
  lines = [doc.strip(), "", "main flags:"]
  lines += [_FLAGFILE_HELP if name == "flagfile" else _describe(fv[name]) for name in main_flags
            if name == "flagfile" or name in fv]
  shown = set(main_flags)
  for module, module_flags in fv.flags_by_module_dict().items():
    if module.startswith("absl."):
      continue
    rest = [f for f in module_flags if f.name not in shown]
    if rest:
      lines += ["", _group_title(module) + ":"] + [_describe(f) for f in sorted(rest, key=lambda f: f.name)]
      shown.update(f.name for f in rest)
  lines += ["", "absl's own flags (--undefok, logging verbosity, ...) are accepted too."]
  return "\n".join(lines)


def flags_parser(doc, main_flags=MAIN_FLAGS):
  """An absl app.run flags_parser: --help prints help_text and exits 0; every flag error exits 2.

  absl's default prints only the main module's flags for --help and exits 1 on --help and on every flag error,
  which would break the exit-code contract (2 = bad input).
  """

  def parse(argv):
    if any(arg in _HELP_ARGS for arg in argv[1:]):
      print(help_text(doc, main_flags))
      sys.exit(errors.EXIT_SUCCESS)
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      message = str(e).removeprefix("ERROR:: ")  # absl's flagfile error carries its own prefix
      print(f"error: {message}\n(--help lists every flag with its default)", file=sys.stderr)
      sys.exit(errors.EXIT_BAD_INPUT)

  return parse
