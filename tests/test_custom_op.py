"""The worked compiled custom op: built by this test against the installed TensorFlow headers, it matches the
default gelu and its gradient, lands in the model's graph, passes kernel_check without XLA, and fails under
jit_compile the way docs/vendor_kernels.md says (no XLA kernel)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_module

pytestmark = pytest.mark.slow  # compiles C++ and starts TensorFlow in subprocesses


@pytest.fixture(scope="module")
def library(tmp_path_factory):
  """Built as a script, so this process imports the kernel module only when the test loads it."""
  out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_op" / "build.py"),
                        f"--out={tmp_path_factory.mktemp('gelu_op')}"], capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  path = out.stdout.strip().splitlines()[-1]
  assert path.endswith("gelu_op.so") and os.path.getsize(path) > 0
  return path


@pytest.fixture(scope="module")
def custom_op(library):
  """Loaded once: TensorFlow keeps an op's gradient registration for the life of the process."""
  from tf_gp2bm import kernels
  os.environ["GP2BM_GELU_OP_LIBRARY"] = library
  kernels.reset()
  try:
    assert kernels.load_plugin("examples.custom_op") == ["gelu"]
    yield sys.modules["examples.custom_op"]
  finally:
    del os.environ["GP2BM_GELU_OP_LIBRARY"]
    kernels.reset()


def test_op_and_its_gradient_equal_the_default_gelu(custom_op):
  import tensorflow as tf
  from tf_gp2bm.kernels import defaults
  x = tf.constant(np.linspace(-6, 6, 97, dtype=np.float32))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    ours, default = custom_op.gelu(x), defaults.gelu(x)
  np.testing.assert_allclose(ours.numpy(), default.numpy(), rtol=1e-6, atol=1e-6)
  # The op's closed-form derivative avoids autodiff's 1 - tanh^2 cancellation in the tails: compare absolutely.
  np.testing.assert_allclose(tape.gradient(ours, x).numpy(), tape.gradient(default, x).numpy(), atol=1e-5)
  assert custom_op.gelu(tf.cast(x, tf.bfloat16)).dtype == tf.bfloat16


def test_op_lands_in_the_bert_step_graph(custom_op):
  import tensorflow as tf
  from tf_gp2bm.tasks.bert.model import TINY, build_bert, dummy_inputs
  model = build_bert(TINY, seq_length=8, predictions=2)

  @tf.function
  def step(inputs):
    with tf.GradientTape() as tape:
      out = model(inputs, training=True)
      loss = tf.reduce_sum(out["mlm_logits"]) + tf.reduce_sum(out["nsp_logits"])
    return tape.gradient(loss, model.trainable_variables)

  graph = step.get_concrete_function(dummy_inputs(2, 8, 2)).graph
  op_types = {op.type for f in [graph, *[graph._functions[n].graph for n in graph._functions]]
              for op in f.get_operations()}
  assert {"Gp2bmGelu", "Gp2bmGeluGrad"} <= op_types


def test_kernel_check_passes_without_xla_and_names_the_missing_xla_kernel(library):
  env = {"GP2BM_GELU_OP_LIBRARY": library}
  out = run_module("tf_gp2bm.kernel_check", "--kernels=examples.custom_op", "--no-xla", env=env)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "3/3 checks within tolerance" in out.stdout
  out = run_module("tf_gp2bm.kernel_check", "--kernels=examples.custom_op", "--precision=fp32", env=env)
  assert out.returncode == 1
  assert "under jit_compile:" in out.stdout and "Gp2bmGelu" in out.stdout, out.stdout


def test_build_as_a_module_writes_only_its_out_folder(tmp_path):
  """`-m examples.custom_op.build` imports the package first; its import-time build goes to the cache, not into
  the source tree."""
  source = ROOT / "examples" / "custom_op"
  before = sorted(p.name for p in source.iterdir() if p.name != "__pycache__")
  env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
  env.pop("GP2BM_GELU_OP_LIBRARY", None)
  out = subprocess.run([sys.executable, "-m", "examples.custom_op.build", f"--out={tmp_path / 'out'}"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "out" / "gelu_op.so").stat().st_size > 0
  assert sorted(p.name for p in source.iterdir() if p.name != "__pycache__") == before
  assert list((tmp_path / "cache" / "tf_gp2bm" / "custom_op").glob("*/gelu_op.so"))
