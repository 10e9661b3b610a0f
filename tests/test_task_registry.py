"""One registry: a task registers once (name -> package), every part finds it there, and the GP2BM score names its
own tasks, so a newly registered task joins the driver's specs but not the score."""
import pytest

import third_task
from third_task import python
from tf_gp2bm.tasks import registry, spec


def test_the_built_in_tasks_are_registered_once_in_score_order():
  assert registry.names()[:2] == ["resnet", "bert"] == [t.task for t in spec.GP2BM_SCORE]
  assert [s.name for s in spec.specs()][:2] == ["resnet", "bert"]
  assert spec.score_formula() == "7.19/R + 9.05/B"


def test_a_name_is_taken_once():
  registry.register("resnet", "tf_gp2bm.tasks.resnet")  # the same package again: nothing changes
  with pytest.raises(ValueError, match="already registered by tf_gp2bm.tasks.resnet"):
    registry.register("resnet", "somewhere.else")
  with pytest.raises(ValueError, match="expected a Python identifier"):
    registry.register("my-task", "somewhere.else")


def test_a_registered_third_task_joins_the_specs_but_not_the_score(tmp_path):
  r = python("""
      from tf_gp2bm.tasks import spec
      print("SPECS", [s.name for s in spec.specs()], spec.get("toy").title)
      print("SCORE", spec.score_formula(), spec.gp2bm_score({"resnet": 7.19, "bert": 9.05, "toy": 0.001}),
            spec.score_term("toy"))
  """, third_task.install(tmp_path))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "SPECS ['resnet', 'bert', 'toy'] Toy blobs / MLP" in r.stdout
  assert "SCORE 7.19/R + 9.05/B 2.0 None" in r.stdout
