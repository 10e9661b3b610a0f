"""The README is a contract: every command in its bash blocks must work as shown.

For each command: the tool it runs answers `--help` with exit 0, every option it shows is in that tool's `--help`,
every repository file it names exists, and every `--flagfile` passes `tf_gp2bm.train --dry_run`. The layout table
lists each top-level folder and package and nothing that is gone. The two quick-start commands themselves are run by
CI (`.ci/run` runs the test command; tests/test_driver.py::test_real_smoke_set_resumes_after_kill runs the demo
flow); test_quick_start_is_what_ci_runs keeps those links true.

The checks are functions returning the problems they find, so test_checks_catch_* can prove on a broken README that
each of them fails.
"""
import dataclasses
import functools
import os
import re
import shlex
import subprocess

import pytest

from conftest import PYTHON, ROOT, run_module

README = ROOT / "README.md"
DRIVER = "run_benchmark.sh"
RUN_SUB = "scripts/slurm/run.sub"
# Paths under these names are repository paths; anything else (/data/..., results/SET) is a placeholder.
REPO_PREFIXES = ("flags/", "scripts/", "docs/", "examples/", "tests/", "tf_gp2bm/", "data_prep/", ".ci/")
REPO_FILES = ("run_benchmark.sh", "Dockerfile", "LICENSE", "CHANGELOG.md", "pyproject.toml", "requirements.txt")
SEPARATORS = {"&&", "||", ";", "|"}
# Built, ignored or machine-local folders that a tree walk without git must skip.
NOT_TRACKED = {".git", ".venv", "results", "runs", "demo_data", "__pycache__", ".pytest_cache", ".gpubench", ".whl"}


@dataclasses.dataclass(frozen=True)
class Invocation:
  """One README command as far as it can be checked: the argv that prints its tool's help, and what it passes."""
  line: str
  help_argv: tuple
  args: tuple  # everything after the tool (and its subcommand)


def bash_blocks(text):
  return re.findall(r"```bash\n(.*?)```", text, re.S)


def commands(text):
  """Each shell command of the bash blocks as an argv: continuation lines joined, comments dropped, split at && ;."""
  for block in bash_blocks(text):
    for line in block.replace("\\\n", " ").splitlines():
      current = []
      for token in shlex.split(line, comments=True):
        if token in SEPARATORS:
          if current:
            yield current
          current = []
        else:
          current.append(token)
      if current:
        yield current


def _clean(token):
  return token.strip("[]")


@functools.lru_cache(maxsize=None)
def tool_help(help_argv):
  """(exit code, output) of a tool's --help; cached, each tool is asked once per session."""
  if help_argv[0] == "python":
    r = run_module(help_argv[2], *help_argv[3:], "--help", timeout=120)
  else:
    r = subprocess.run([str(ROOT / help_argv[0]), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHON=PYTHON))
  return r.returncode, r.stdout + r.stderr


def _subcommands(help_argv):
  """The subcommands a tool's usage line lists ({a,b,c}), or none."""
  _, out = tool_help(help_argv)
  usage = out.split("\n\n", 1)[0]
  found = re.search(r"\{([\w,-]+)\}", usage)
  return found.group(1).split(",") if found else []


def invocation(argv):
  """The checkable part of a command: `python -m MODULE [SUB]`, run_benchmark.sh or run.sub; None for others
  (bash scripts, docker, horovodrun's own options)."""
  line = " ".join(argv)
  words = [w[2:] if w.startswith("./") else w for w in argv]
  if "-m" in words and words.index("-m") > 0 and words[words.index("-m") - 1].startswith("python"):
    i = words.index("-m")
    module, rest = words[i + 1], words[i + 2:]
    help_argv = ("python", "-m", module)
    if rest and not rest[0].startswith("-") and rest[0] in _subcommands(help_argv):
      help_argv, rest = help_argv + (rest[0],), rest[1:]
    return Invocation(line, help_argv, tuple(rest))
  if DRIVER in words:
    return Invocation(line, (DRIVER,), tuple(words[words.index(DRIVER) + 1:]))
  if RUN_SUB in words:  # run.sub MODE ...: `train` hands the rest to the trainer, the other modes to the driver
    rest = words[words.index(RUN_SUB) + 1:]
    if rest and rest[0] == "train":
      return Invocation(line, ("python", "-m", "tf_gp2bm.train"), tuple(rest[1:]))
    return Invocation(line, (DRIVER,), tuple(rest))
  return None


def options(inv):
  """The --options a command passes to its tool, by name."""
  return [_clean(a).split("=", 1)[0] for a in inv.args if _clean(a).startswith("--") and _clean(a) != "--"]


def option_in_help(name, help_text):
  """absl prints booleans as --[no]name, argparse as --name/--no-name; a value flag appears as --name."""
  base = name[2:]
  spellings = [f"--{base}", f"--[no]{base}"]
  if base.startswith("no"):
    spellings += [f"--[no]{base[2:]}"]
  return any(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", help_text) for s in spellings)


def invocation_problems(inv):
  code, out = tool_help(inv.help_argv)
  if code != 0:
    return [f"{' '.join(inv.help_argv)} --help exits {code}: {out.strip()[-300:]}"]
  return [f"{name} (in `{inv.line}`) is not in `{' '.join(inv.help_argv)} --help`"
          for name in options(inv) if not option_in_help(name, out)]


def option_problems(text):
  invocations = [inv for inv in map(invocation, commands(text)) if inv is not None]
  return [p for inv in invocations for p in invocation_problems(inv)]


def repo_paths(text):
  """Repository paths the README names, in code and prose (placeholders with <...> left out)."""
  prefixes = "|".join(re.escape(p) for p in REPO_PREFIXES)
  files = "|".join(re.escape(f) for f in REPO_FILES)
  found = re.findall(rf"(?<![\w./-])((?:\./)?(?:{prefixes})[\w./<>*-]*|(?:\./)?(?:{files}))(?![\w<>-])", text)
  paths = set()
  for path in found:
    path = path[2:] if path.startswith("./") else path
    if "<" not in path and "*" not in path:
      paths.add(path.rstrip(".,:;"))
  return sorted(paths)


def file_problems(text):
  problems = [f"{p} does not exist" for p in repo_paths(text) if not (ROOT / p).exists()]
  for argv in commands(text):
    inv = invocation(argv)
    if inv is None:
      continue
    values = dict(_clean(a)[2:].split("=", 1) for a in inv.args if _clean(a).startswith("--") and "=" in a)
    if "kernels" in values:  # a module name: the file it imports from
      module = ROOT / values["kernels"].replace(".", "/")
      if not (module.with_suffix(".py").exists() or (module / "__init__.py").exists()):
        problems.append(f"--kernels={values['kernels']}: no such module in the repository")
    if inv.help_argv == (DRIVER,) and "system" in values:  # --system=S needs flags/<task>/S.flags for every task
      for task in ("resnet", "bert"):
        if not (ROOT / "flags" / task / f"{values['system']}.flags").exists():
          problems.append(f"--system={values['system']}: flags/{task}/{values['system']}.flags does not exist")
  return problems


def flagfile_runs(text):
  """(task, flagfile) of every trainer command that names both."""
  pairs = set()
  for argv in commands(text):
    inv = invocation(argv)
    if inv is None or inv.help_argv != ("python", "-m", "tf_gp2bm.train"):
      continue
    values = dict(_clean(a)[2:].split("=", 1) for a in inv.args if _clean(a).startswith("--") and "=" in a)
    if "task" in values and "flagfile" in values:
      pairs.add((values["task"], values["flagfile"]))
  return sorted(pairs)


def replicas_of(flagfile):
  """The GPUs a flagfile is named for: 8xgpu -> 8, 2x8xgpu -> 16, others (smoke) -> 1."""
  sizes = re.match(r"(?:(\d+)x)?(\d+)xgpu\.flags$", os.path.basename(flagfile))
  return int(sizes.group(1) or 1) * int(sizes.group(2)) if sizes else 1


def tracked_files():
  r = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
  if r.returncode == 0 and r.stdout.strip():
    return r.stdout.split()
  files = []  # an unpacked copy without .git: the tree less what is built or ignored
  for folder, dirs, names in os.walk(ROOT):
    dirs[:] = [d for d in dirs if d not in NOT_TRACKED]
    files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
  return files


def layout_entries(text):
  section = re.search(r"^## Layout\n(.*?)(?=^## )", text, re.S | re.M)
  rows = [line for line in section.group(1).splitlines() if line.startswith("| `")] if section else []
  return [p for row in rows for p in re.findall(r"`([^`]+)`", row.split("|")[1])]


def layout_problems(text, files):
  entries = layout_entries(text)
  if not entries:
    return ["README has no layout table under '## Layout'"]
  dirs = {os.path.dirname(f) for f in files}
  dirs |= {os.path.join(*d.split("/")[:i]) for d in dirs if d for i in range(1, d.count("/") + 2)}
  problems = [f"layout names {e}, which is not in the tree" for e in entries
              if e.rstrip("/") not in (dirs if e.endswith("/") else set(files) | dirs)]
  # Every top-level folder, and every package directly under the two packages, is named (or a file inside it).
  wanted = {f.split("/")[0] for f in files if "/" in f}
  wanted |= {os.path.dirname(f) for f in files
             if f.count("/") == 2 and f.endswith("/__init__.py") and f.split("/")[0] in ("tf_gp2bm", "data_prep")}
  for folder in sorted(wanted):
    if not any(e.rstrip("/") == folder or e.startswith(folder + "/") for e in entries):
      problems.append(f"layout does not list {folder}/")
    elif "/" in folder and not any(e.rstrip("/") == folder for e in entries):
      problems.append(f"layout does not list the package {folder}/ itself")
  return problems


TEXT = README.read_text()
INVOCATIONS = [inv for inv in map(invocation, commands(TEXT)) if inv is not None]


# ------------------------------------------------------------------------------------------------ the README
def test_readme_shows_the_commands_of_each_section():
  heads = [inv.help_argv for inv in INVOCATIONS]
  for tool in [("python", "-m", "tf_gp2bm.train"), ("python", "-m", "data_prep.imagenet", "convert"),
               ("python", "-m", "data_prep.wikipedia", "all"), ("python", "-m", "data_prep.wikipedia", "pack"),
               ("python", "-m", "data_prep.bert_checkpoint", "verify"),
               ("python", "-m", "data_prep.bert_checkpoint", "convert"), ("python", "-m", "data_prep.demo.imagenet"),
               ("python", "-m", "data_prep.demo.bert"), ("python", "-m", "tf_gp2bm.kernel_check"), (DRIVER,)]:
    assert tool in heads, f"the README shows no `{' '.join(tool)}` command"


@pytest.mark.parametrize("help_argv", sorted({inv.help_argv for inv in INVOCATIONS}), ids=" ".join)
def test_each_tool_answers_help(help_argv):
  code, out = tool_help(help_argv)
  assert code == 0 and out.strip(), out[-2000:]


@pytest.mark.parametrize("inv", INVOCATIONS, ids=lambda inv: inv.line[:70])
def test_each_option_is_in_its_tools_help(inv):
  assert invocation_problems(inv) == []


def test_each_named_file_exists():
  assert file_problems(TEXT) == []


def test_layout_table_matches_the_tree():
  assert layout_problems(TEXT, tracked_files()) == []


def test_no_machine_path_or_issue_number():
  assert not re.search(r"/work/|/home/|\.\./shared", TEXT)
  assert not re.search(r"(?i)\bissue\s*#?\d+|(?<![\w&])#\d+\b", TEXT)


def test_quick_start_is_what_ci_runs():
  quick = bash_blocks(TEXT.split("## Quick start", 1)[1])[0]
  assert "bash scripts/setup.sh && ./run_benchmark.sh demo" in quick and "bash scripts/run_tests.sh" in quick
  assert "bash scripts/run_tests.sh" in (ROOT / ".ci" / "run").read_text()  # CI runs the test command
  assert "bash scripts/setup.sh" in (ROOT / "scripts" / "run_tests.sh").read_text()  # which runs setup first
  driver_tests = (ROOT / "tests" / "test_driver.py").read_text()  # and a test runs the demo flow for real
  demo_test = driver_tests.split("def test_real_smoke_set_resumes_after_kill", 1)[1].split("\ndef ", 1)[0]
  assert '"run_benchmark.sh"), "demo"' in demo_test


@pytest.mark.slow
@pytest.mark.parametrize("task,flagfile", flagfile_runs(TEXT))
def test_each_flagfile_passes_a_dry_run(task, flagfile):
  r = run_module("tf_gp2bm.train", f"--task={task}", f"--flagfile={flagfile}", "--dry_run",
                 f"--dry_run_replicas={replicas_of(flagfile)}", timeout=300)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  assert "[tf_gp2bm] plan:" in r.stdout + r.stderr


# ------------------------------------------------------------------------- the checks can fail
BROKEN = """
## Running
```bash
python -m tf_gp2bm.no_such_tool --x=1
python -m tf_gp2bm.train --task=resnet --flagfile=flags/resnet/9xgpu.flags --no_such_option=3
python -m data_prep.wikipedia pack --input=A --out=B --no_such_pack_option
./run_benchmark.sh all --system=7xgpu --kernels=examples.no_such_module
```
See docs/no_such_page.md.

## Layout

| path | what |
| --- | --- |
| `tf_gp2bm/`, `tf_gp2bm/kernels.py`, `tf_gp2bm/tasks/spec.py` | gone |

## License
"""


def test_checks_catch_a_wrong_module_option_and_file():
  problems = option_problems(BROKEN)
  assert any(p.startswith("python -m tf_gp2bm.no_such_tool --help exits 1") for p in problems), problems
  assert any(p.startswith("--no_such_option (in `python -m tf_gp2bm.train") for p in problems), problems
  assert any(p.startswith("--no_such_pack_option (in") and "data_prep.wikipedia pack --help" in p for p in problems)
  problems = file_problems(BROKEN)
  assert "flags/resnet/9xgpu.flags does not exist" in problems and "docs/no_such_page.md does not exist" in problems
  assert "--kernels=examples.no_such_module: no such module in the repository" in problems
  assert "--system=7xgpu: flags/resnet/7xgpu.flags does not exist" in problems


def test_checks_catch_a_layout_table_out_of_date():
  problems = layout_problems(BROKEN, tracked_files())
  assert "layout names tf_gp2bm/kernels.py, which is not in the tree" in problems
  assert "layout does not list data_prep/" in problems and "layout does not list tf_gp2bm/driver/" in problems
  assert "layout does not list the package tf_gp2bm/tasks/ itself" in problems


def test_reliability_page_names_tests_that_exist():
  """docs/reliability.md lists the fault cases by test name: each must be a test in tests/."""
  page = (ROOT / "docs" / "reliability.md").read_text()
  defined = {name for f in (ROOT / "tests").glob("test_*.py") for name in re.findall(r"^def (test_\w+)", f.read_text(),
                                                                                        re.M)}
  named = set(re.findall(r"`(test_\w+)`", page))
  assert len(named) > 40 and named <= defined, sorted(named - defined)
  assert [p for p in re.findall(r"`(tests/[\w/]+\.py)`", page) if not (ROOT / p).exists()] == []
