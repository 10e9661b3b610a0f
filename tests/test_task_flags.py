"""Tasks own their flags: a task's flags exist only with --task=<it>, another task's flag is exit 2 naming its owner,
two tasks may share a flag name, the closed division refuses what its rules fix, and the config layer loads no
TensorFlow."""
import dataclasses
import re

import pytest

import third_task
from conftest import ROOT, run_train
from third_task import python
from tf_gp2bm import dry_run, tasks
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.base import flag_text, params

def test_the_config_layer_loads_no_tensorflow():
  # Parsing and validating every closed flagfile (BERT's reads its model size) and --help stay TensorFlow-free.
  r = python("""
      import glob, sys
      from tf_gp2bm import cli_flags, dry_run, tasks
      from tf_gp2bm.run_config import RunConfig
      from tf_gp2bm.tasks import spec
      for name in tasks.names():
        tasks.config_class(name)
        spec.get(name)
        for path in sorted(glob.glob(f"flags/{name}/*.flags")):
          dry_run.parse_config(name, [f"--flagfile={path}"])
          fv = cli_flags.new_flag_values(name)
          cli_flags.parse(["train", f"--task={name}", f"--flagfile={path}"], fv)
          RunConfig.from_flags(fv)
      cli_flags.help_text("doc")
      heavy = sorted(m for m in ("tensorflow", "tf_keras", "official", "horovod") if m in sys.modules)
      print("HEAVY", heavy)
  """)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "HEAVY []" in r.stdout


@pytest.mark.parametrize("task,args,owner", [
    ("bert", ["--image_op=fused"], "--image_op belongs to --task=resnet, not --task=bert"),
    ("resnet", ["--flagfile=flags/resnet/smoke.flags", "--packed"], "--packed belongs to --task=bert"),
    ("resnet", ["--nopacked"], "--nopacked belongs to --task=bert"),
    ("bert", ["--flagfile=flags/resnet/smoke.flags"], "--num_classes belongs to --task=resnet"),  # in a flagfile
    (None, ["--train_epochs=3"], "--train_epochs belongs to --task=resnet; --task is missing"),
])
def test_a_flag_of_another_task_is_exit_2_naming_its_owner(task, args, owner, tmp_path):
  r = run_train(*([f"--task={task}"] if task else []), *args, f"--output_dir={tmp_path}", timeout=60)
  assert r.returncode == 2 and owner in r.stderr, r.stderr[-2000:]


def test_an_unknown_flag_or_task_is_exit_2():
  r = run_train("--task=resnet", "--no_such_flag=1", timeout=60)
  assert r.returncode == 2 and "Unknown command line flag 'no_such_flag'" in r.stderr, r.stderr
  r = run_train("--task=resnet50", timeout=60)
  assert r.returncode == 2 and "--task=resnet50: expected one of bert, resnet" in r.stderr, r.stderr


def test_help_shows_each_tasks_flags_in_its_own_section():
  everything = run_train("--help", timeout=60).stdout
  def section(title):  # the flags listed under one heading, up to the next one
    text = everything.split(f"\n{title}:\n", 1)[1]
    return re.split(r"\n\S[^\n]*:\n", text, 1)[0]
  assert "--eval_offset_epochs" in section("flags of the resnet task (--task=resnet)")
  assert "--bert_config" in section("flags of the bert task (--task=bert)")
  assert "--bert_config" not in section("flags of the resnet task (--task=resnet)")
  assert "--accumulation_steps" in section("flags every task reads")
  bert = run_train("--task=bert", "--help", timeout=60).stdout
  assert "--[no]packed" in bert and "image_op" not in bert and "flags of the resnet task" not in bert


def _non_default(field):
  if isinstance(field.default, bool):
    return not field.default
  return 2 * field.default if field.default else 1000


@pytest.mark.parametrize("task", tasks.names())
def test_closed_refuses_every_fixed_flag_away_from_its_default(task):
  closed = [f"--flagfile={ROOT}/flags/{task}/8xgpu.flags"]
  fixed = [f for f in params(tasks.config_class(task)) if f.metadata["fixed"]]
  assert fixed
  for field in fixed:
    setting = flag_text(field.name, _non_default(field))
    with pytest.raises(InputError, match=f"^--(no)?{field.name}"):
      dry_run.parse_config(task, closed + [setting])
  # Unchanged, every flagfile's config is the defaults where the rules fix them.
  config = dry_run.parse_config(task, closed)
  assert all(getattr(config, f.name) == f.default for f in fixed)


def test_every_task_field_has_one_default_and_help():
  for task in tasks.names():
    config_cls = tasks.config_class(task)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    assert fields - {f.name for f in params(config_cls)} == {"closed"}  # the trainer's --closed, not a task flag
    assert config_cls() == config_cls.defaults()  # every field has its default, written once


def test_a_third_task_may_name_its_flags_like_another_tasks(tmp_path):
  root = third_task.install(tmp_path)
  r = python("""
      from absl import flags
      from tf_gp2bm import cli_flags, tasks
      print("NAMES", tasks.names())
      for argv in (["--task=toy", "--train_steps=3", "--nopacked", "--hidden_units=4"],
                   ["--task=bert", "--train_steps=7", "--packed"]):
        fv = cli_flags.new_flag_values(argv[0].split("=")[1])
        cli_flags.parse(["p", *argv], fv)
        print("PARSED", fv.task, fv.train_steps, fv.packed)
      fv = cli_flags.new_flag_values("toy")
      try:
        cli_flags.parse(["p", "--task=toy", "--image_op=tf"], fv)
      except Exception as e:
        print("REFUSED", e)
      try:
        cli_flags.parse(["p", "--task=resnet", "--hidden_units=3"], cli_flags.new_flag_values("resnet"))
      except Exception as e:
        print("REFUSED", e)
      print("HELP" if "flags of the toy task (--task=toy):" in cli_flags.help_text("doc") else "NO HELP")
  """, root)
  assert r.returncode == 0, r.stderr[-3000:]
  out = r.stdout
  assert "NAMES ['resnet', 'bert', 'toy']" in out
  assert "PARSED toy 3 False" in out and "PARSED bert 7 True" in out
  assert "REFUSED --image_op belongs to --task=resnet, not --task=toy" in out
  assert "REFUSED --hidden_units belongs to --task=toy, not --task=resnet" in out
  assert "HELP" in out.split()
