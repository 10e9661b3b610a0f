"""The trainer's command line (tf_gp2bm.train, tf_gp2bm.bench): the trainer-wide flags, the task's flags, --help,
and flag errors as exit code 2.

A task's flags are its Config's `param` fields (tasks/base.py). They are defined only for the task selected: `parse`
finds --task first (on the command line or in a --flagfile, as absl reads them), defines that task's flags, refuses
a flag of another task by naming its owner, then lets absl parse. So two tasks may use the same flag name.
TensorFlow-free on purpose: `--help` and every flag error answer before TensorFlow or the model garden load.
"""
import copy
import sys
import textwrap

from absl import flags

from tf_gp2bm import errors, tasks
from tf_gp2bm.errors import InputError
from tf_gp2bm.runtime import DISTRIBUTIONS
from tf_gp2bm.tasks.base import TaskConfig, param_owner, param_type, params

flags.DEFINE_string("task", None, "Benchmark to train (required): a registered task.")
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


# --- a task's flags ------------------------------------------------------------------------------------------------
_SHARED = TaskConfig.__module__  # the fields every task's Config inherits


def define_task_flags(name, flag_values):
  """Defines the flags of task `name` (one per `param` field of its Config) on `flag_values`; each Flag carries
  `.task` (its task) and `.shared` (a field every task has)."""
  config_cls = tasks.config_class(name)
  for field in params(config_cls):
    if field.name in flag_values:
      raise ValueError(f"{config_cls.__module__}.Config.{field.name}: --{field.name} is already a trainer flag; "
                       "a task's field needs another name")
    kind, meta, owner = param_type(config_cls, field), field.metadata, param_owner(config_cls, field.name)
    common = dict(name=field.name, default=field.default, help=meta["help"], flag_values=flag_values,
                  module_name=owner)
    bounds = {k: v for k, v in (("lower_bound", meta["lower"]), ("upper_bound", meta["upper"])) if v is not None}
    if kind is bool:
      flags.DEFINE_bool(**common)
    elif kind is int:
      flags.DEFINE_integer(**common, **bounds)
    elif kind is float:
      flags.DEFINE_float(**common, **bounds)
    elif meta["choices"]:
      flags.DEFINE_enum(enum_values=meta["choices"], **common)
    else:
      flags.DEFINE_string(**common)
    flag = flag_values[field.name]
    flag.task, flag.shared = name, owner == _SHARED


def select_task(name, flag_values=flags.FLAGS):
  """Makes `flag_values` hold the flags of task `name` (and no other task's); a no-op when it already does."""
  held = {getattr(flag_values[f], "task", None) for f in list(flag_values)} - {None}
  if held == {name}:
    return
  for flag_name in list(flag_values):
    if getattr(flag_values[flag_name], "task", None) is not None:
      delattr(flag_values, flag_name)
  define_task_flags(name, flag_values)


def selected_task(argv):
  """The --task that argv gives (its --flagfile read as absl reads them; the last one wins), or None."""
  probe = flags.FlagValues()
  flags.DEFINE_string("task", None, "", flag_values=probe)
  probe(list(argv), known_only=True)
  return probe.task


def owners(flag_name):
  """The registered tasks that have a flag `flag_name` (a bool's --noNAME form included)."""
  found = []
  for name in tasks.names():
    fields = {f.name: f for f in params(tasks.config_class(name))}
    bare = flag_name[2:] if flag_name.startswith("no") else None
    if flag_name in fields or (bare in fields and param_type(tasks.config_class(name), fields[bare]) is bool):
      found.append(name)
  return found


def _refuse_other_tasks_flags(args, flag_values, task):
  for arg in args:
    if arg == "--" or not arg.startswith("-"):
      break  # absl stops here too
    name = arg.lstrip("-").split("=", 1)[0]
    if name in flag_values or (name.startswith("no") and name[2:] in flag_values):
      continue
    found = owners(name)
    if found:
      belongs = " or ".join(f"--task={t}" for t in found)
      raise InputError(f"--{name} belongs to {belongs}" + (f", not --task={task}" if task else "; --task is missing"))


def parse(argv, flag_values=flags.FLAGS):
  """Parses argv (argv[0] = program) into `flag_values` with the selected task's flags; returns absl's leftover
  arguments. Raises InputError for an unknown task or another task's flag, flags.Error for the rest."""
  task = selected_task(argv)
  if task is not None:
    select_task(task, flag_values)
  _refuse_other_tasks_flags(flag_values.read_flags_from_files(list(argv[1:]), force_gnu=False), flag_values, task)
  return flag_values(list(argv))


def new_flag_values(task):
  """A private FlagValues with the trainer flags (their definitions copied) and task `task`'s flags, unparsed."""
  private = flags.FlagValues()
  for name, flag in flags.FLAGS._flags().items():  # noqa: SLF001  (absl has no public copy of a registry)
    if name == flag.name and getattr(flag, "task", None) is None:  # short-name aliases come with their flag
      private[name] = copy.deepcopy(flag)
  select_task(task, private)
  return private


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
  if flag.name == "task":
    name = f"--task={'|'.join(tasks.names())}"
  elif flag.flag_type() == "bool":
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
  if module == __name__:
    return "more trainer flags"
  return f"flags of {module}"


def _task_sections(flag_values, task):
  """(title, flags) of the task flags: the shared ones, then each task's own. With no task selected, every
  registered task's, read from its Config on a private FlagValues (nothing is defined on `flag_values`)."""
  if task is not None:
    defined = [flag_values[n] for n in flag_values if getattr(flag_values[n], "task", None) == task]
    by_task = {task: defined}
  else:
    by_task = {}
    for name in tasks.names():
      private = flags.FlagValues()
      define_task_flags(name, private)
      by_task[name] = [private[n] for n in private]
  first = next(iter(by_task.values()), [])
  sections = [("flags every task reads", [f for f in first if f.shared])]
  sections += [(f"flags of the {name} task (--task={name})", [f for f in task_flags if not f.shared])
               for name, task_flags in by_task.items()]
  return sections


def help_text(doc, main_flags=MAIN_FLAGS, flag_values=flags.FLAGS, task=None):
  """The main flags first, then the other trainer flags grouped by the module that defines them, then the task
  flags: those of `task`, or of every registered task in its own section."""
  sections = _task_sections(flag_values, task)
  by_name = {f.name: f for _, fs in sections for f in fs}
  by_name.update({n: flag_values[n] for n in flag_values})
  lines = [doc.strip(), "", "main flags:"]
  lines += [_FLAGFILE_HELP if name == "flagfile" else _describe(by_name[name]) for name in main_flags
            if name == "flagfile" or name in by_name]
  shown = set(main_flags)
  trainer = [(module, [f for f in module_flags if getattr(f, "task", None) is None])
             for module, module_flags in flag_values.flags_by_module_dict().items() if not module.startswith("absl.")]
  for title, section in [(_group_title(m), fs) for m, fs in trainer] + sections:
    rest = [f for f in section if f.name not in shown]
    if rest:
      lines += ["", title + ":"] + [_describe(f) for f in sorted(rest, key=lambda f: f.name)]
      shown.update(f.name for f in rest)
  lines += ["", "absl's own flags (--undefok, logging verbosity, ...) are accepted too."]
  return "\n".join(lines)


def flags_parser(doc, main_flags=MAIN_FLAGS):
  """An absl app.run flags_parser: --help prints help_text and exits 0; every flag error exits 2.

  absl's default prints only the main module's flags for --help and exits 1 on --help and on every flag error,
  which would break the exit-code contract (2 = bad input).
  """

  def parse_or_exit(argv):
    try:
      if any(arg in _HELP_ARGS for arg in argv[1:]):
        task = selected_task([a for a in argv if a not in _HELP_ARGS])
        if task not in tasks.names():
          task = None
        if task is not None:
          select_task(task)
        print(help_text(doc, main_flags, task=task))
        sys.exit(errors.EXIT_SUCCESS)
      return parse(argv)
    except (flags.Error, InputError) as e:
      message = str(e).removeprefix("ERROR:: ")  # absl's flagfile error carries its own prefix
      print(f"error: {message}\n(--help lists every flag with its default)", file=sys.stderr)
      sys.exit(errors.EXIT_BAD_INPUT)

  return parse_or_exit
