"""The vendor kernel swap point: contracts are enforced at the kernel, replacements land in the compiled step,
identical ones change nothing, and a run can say exactly which kernel files it used."""
import dataclasses
import importlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from conftest import check_compliance, run_module, run_train
from tf_gp2bm import kernels
from tf_gp2bm.errors import InputError

EXPECTED = {"attention_core", "batch_norm", "bias_gelu", "gelu", "lamb_apply", "lamb_update", "lars_apply",
            "lars_update", "layer_norm", "mlm_softmax_cross_entropy", "residual_dropout_layer_norm",
            "self_attention"}


@pytest.fixture(autouse=True)
def clean_registry():
  kernels.reset()
  for mod in [m for m in sys.modules if m.startswith(("kernel_plugins.", "acme_")) or m == "examples.vendor_kernels"]:
    del sys.modules[mod]
  yield
  kernels.reset()


def _plugin(name):
  return importlib.import_module(f"kernel_plugins.{name}")


def test_every_hot_spot_has_a_documented_default():
  assert set(kernels.names()) == EXPECTED
  for name in kernels.names():
    assert kernels.contract(name).startswith(name + "("), name


def test_package_and_module_files_do_not_load_tensorflow():
  code = ("import sys, tf_gp2bm.kernels as k; files = k.module_files('examples.vendor_kernels'); "
          "print(sorted(files)); assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "['examples/__init__.py', 'examples/vendor_kernels.py']" in out.stdout


def test_register_checks_the_name_and_the_signature():
  with pytest.raises(kernels.KernelError, match=r"register\('softmax'\): unknown hot spot; known: attention_core"):
    kernels.register("softmax", lambda x: x)
  with pytest.raises(kernels.KernelError, match=r"register\('layer_norm'\) from .*takes \(x, gamma, beta\); the "
                     r"contract is layer_norm\(x, gamma, beta, epsilon\)"):
    kernels.register("layer_norm", lambda x, gamma, beta: x)
  kernels.register("layer_norm", lambda x, gamma, beta, epsilon, fast_math=True: x)  # extra defaulted: fine
  assert kernels.replaced() == ["layer_norm"]


@pytest.mark.parametrize("module,message", [
    ("no.such.module", r"--kernels=no.such.module: importing the module failed: ModuleNotFoundError"),
    ("kernel_plugins.broken_import", r"--kernels=kernel_plugins.broken_import: importing the module failed: "
                                     r"ModuleNotFoundError: No module named 'acme_fused_kernels'"),
    ("kernel_plugins.registers_nothing", r"--kernels=kernel_plugins.registers_nothing: the module registered no "
                                         r"kernels"),
])
def test_loading_a_bad_module_is_bad_input_naming_the_flag(module, message):
  with pytest.raises(InputError, match=message):
    kernels.load_plugin(module)
  assert kernels.loaded_module() is None


def test_output_shape_is_checked_when_traced():
  assert kernels.load_plugin("kernel_plugins.wrong_layout") == ["attention_core"]
  q = tf.zeros([1, 8, 2, 32])
  with pytest.raises(kernels.KernelError, match=r"attention_core from kernel_plugins.wrong_layout returned "
                     r"\[1,2,8,32\] float32; expected \[1,8,2,32\] float32"):
    tf.function(lambda: kernels.get("attention_core")(q, q, q, None, 0.0, None, False))()


def test_a_missing_gradient_names_the_variable_and_the_replaced_hot_spots():
  kernels.load_plugin("kernel_plugins.no_gradient")
  from tf_gp2bm.tasks.bert.model import TINY, build_bert, dummy_inputs
  model = build_bert(TINY, seq_length=8, predictions=2)
  with tf.GradientTape() as tape:
    out = model(dummy_inputs(2, 8, 2), training=True)
    loss = tf.reduce_sum(out["mlm_logits"]) + tf.reduce_sum(out["nsp_logits"])
  grads = tape.gradient(loss, model.trainable_variables)
  with pytest.raises(kernels.KernelError, match=r"--kernels=kernel_plugins.no_gradient: no gradient reaches "
                     r"bert_encoder/embeddings/layer_norm/gamma:0 through the replaced hot spots \(layer_norm\)"):
    kernels.check_gradients(model.trainable_variables, grads)


def test_audit_names_the_module_its_hot_spots_and_a_hash_of_its_files(tmp_path, monkeypatch):
  package = tmp_path / "acme_kernels"
  package.mkdir()
  (package / "__init__.py").write_text("from tf_gp2bm import kernels\nfrom acme_kernels.ops import gelu\n"
                                       "kernels.register('gelu', gelu)\n")
  (package / "ops.py").write_text("import tensorflow as tf\n\ndef gelu(x):\n  return tf.nn.gelu(x, True)\n")
  (package / "gelu.cc").write_text("// the kernel source travels with the module\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  assert kernels.audit() == {"module": None, "replaced": [], "sha256": None, "files": []}
  kernels.load_plugin("acme_kernels")
  record = kernels.audit()
  assert record["module"] == "acme_kernels" and record["replaced"] == ["gelu"]
  assert record["files"] == ["acme_kernels/__init__.py", "acme_kernels/gelu.cc", "acme_kernels/ops.py"]
  assert len(record["sha256"]) == 64
  assert not any("__pycache__" in f for f in kernels.module_files("acme_kernels").values())
  (package / "gelu.cc").write_text("// changed\n")
  assert kernels.audit()["sha256"] != record["sha256"]


def _resnet_loss():
  from tf_gp2bm.tasks.resnet.model import build_resnet
  tf_keras.utils.set_random_seed(3)
  model = build_resnet(10, image_size=32, depth=10, width=0.25)
  images = tf.random.stateless_uniform([4, 32, 32, 3], [1, 2], -1, 1)
  labels = tf.one_hot([1, 2, 3, 4], 10)

  @tf.function(jit_compile=True)
  def step():
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf_keras.losses.categorical_crossentropy(labels, model(images, training=True)))
    return loss, tape.gradient(loss, model.trainable_variables)[0]
  loss, grad = step()
  moving = np.concatenate([v.numpy().ravel() for v in model.non_trainable_variables])
  return float(loss), grad.numpy(), moving


@pytest.mark.slow  # compiles and runs training steps
def test_batch_norm_swap_lands_in_compiled_resnet_step():
  base_loss, base_grad, base_moving = _resnet_loss()
  ident = _plugin("identity")
  loss, grad, moving = _resnet_loss()
  assert ident.CALLS.get("batch_norm", 0) > 0
  assert loss == base_loss and np.array_equal(grad, base_grad) and np.array_equal(moving, base_moving)
  kernels.reset()
  _plugin("halve")
  halved, _, _ = _resnet_loss()
  assert halved != pytest.approx(base_loss, rel=1e-3)


def test_worked_example_matches_default_numerics():
  base_loss, base_grad, base_moving = _resnet_loss()
  importlib.import_module("examples.vendor_kernels")
  assert kernels.replaced() == ["batch_norm", "gelu", "layer_norm"]
  loss, grad, moving = _resnet_loss()
  assert loss == pytest.approx(base_loss, rel=1e-4)
  np.testing.assert_allclose(grad, base_grad, rtol=2e-3, atol=1e-5)
  np.testing.assert_allclose(moving, base_moving, rtol=1e-5, atol=1e-6)


def _lars_result():
  from tf_gp2bm.optimizers.lars import LARS
  w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), name="dense/kernel")
  b = tf.Variable(np.ones(4, np.float32), name="dense/bias")
  opt = LARS(lambda s: 0.1, momentum=0.9, weight_decay=1e-4).build([w, b])
  tf.function(opt.apply, jit_compile=True)([tf.ones((3, 4)), tf.ones(4)])
  return np.concatenate([w.numpy().ravel(), b.numpy()])


def test_lars_swaps_at_both_cut_points():
  base = _lars_result()
  ident = _plugin("identity")
  assert np.array_equal(_lars_result(), base)
  assert ident.CALLS["lars_apply"] == 1 and ident.CALLS["lars_update"] == 2  # one call over the list
  kernels.reset()
  halve = importlib.import_module("kernel_plugins.halve")
  kernels.reset()
  kernels.register("lars_apply", halve._halve_lr("lars_apply"))
  assert not np.allclose(_lars_result(), base)


def _bert_loss(config=None, training=False):
  from tf_gp2bm.tasks.bert.model import TINY, build_bert, dummy_inputs
  tf_keras.utils.set_random_seed(5)
  model = build_bert(config or TINY, seq_length=16, predictions=4)
  inputs = dummy_inputs(2, 16, 4)
  inputs["input_word_ids"] = tf.random.stateless_uniform([2, 16], [3, 4], 0, TINY.vocab_size, tf.int32)

  @tf.function(jit_compile=True)
  def step():
    out = model(inputs, training=training)
    return tf.reduce_mean(tf.square(out["mlm_logits"])) + tf.reduce_mean(tf.square(out["nsp_logits"]))
  return float(step())


def test_bert_swaps_land_in_compiled_step():
  base = _bert_loss()
  ident = _plugin("identity")
  assert _bert_loss() == base
  for name in ("self_attention", "attention_core", "residual_dropout_layer_norm", "layer_norm", "bias_gelu",
               "gelu"):
    assert ident.CALLS.get(name, 0) > 0, name
  kernels.reset()
  _plugin("halve")
  assert _bert_loss() != pytest.approx(base, rel=1e-3)


@pytest.mark.slow  # compiles and runs training steps
def test_bert_dropout_is_seeded_and_the_same_on_every_run_under_xla():
  from tf_gp2bm.tasks.bert.model import TINY, build_bert
  config = dataclasses.replace(TINY, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
  inference = _bert_loss(config)
  assert _bert_loss(config, training=True) != pytest.approx(inference, rel=1e-4)
  assert _bert_loss(config, training=True) == _bert_loss(config, training=True)  # same seed, same masks
  model = build_bert(config, seq_length=8, predictions=2)
  assert len(model.variables) == len(model.trainable_variables)  # the seed generator is not a model variable


def test_self_attention_takes_a_block_diagonal_mask_for_packed_sequences():
  rng = np.random.default_rng(0)
  hidden, heads = 16, 4
  x = tf.constant(rng.normal(size=(1, 6, hidden)), tf.float32)
  qkv_kernel = tf.constant(rng.normal(size=(hidden, 3 * hidden)) * 0.3, tf.float32)
  qkv_bias = tf.constant(rng.normal(size=(3 * hidden,)), tf.float32)
  out_kernel = tf.constant(rng.normal(size=(hidden, hidden)) * 0.3, tf.float32)
  out_bias = tf.zeros([hidden])
  attend = kernels.get("self_attention")
  segments = np.array([0, 0, 0, 0, 1, 1])  # two sequences packed into one row of 6
  mask = tf.constant((segments[:, None] == segments[None, :])[None].astype(np.float32))
  packed = attend(x, qkv_kernel, qkv_bias, out_kernel, out_bias, mask, heads, 0.0, None, False)
  alone = [attend(x[:, s], qkv_kernel, qkv_bias, out_kernel, out_bias, None, heads, 0.0, None, False)
           for s in (slice(0, 4), slice(4, 6))]
  np.testing.assert_allclose(packed.numpy(), tf.concat(alone, axis=1).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_deterministic_runs_repeat_the_trajectory_and_record_the_kernels(demo_imagenet, tmp_path):
  args = ["--task=resnet", "--flagfile=flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}", "--seed=7",
          "--train_epochs=2", "--deterministic", "--weights_digest", "--kernels=examples.vendor_kernels"]
  runs, losses = [tmp_path / "a", tmp_path / "b"], []
  for run in runs:
    out = run_train(*args, f"--output_dir={run}")
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-2000:]  # two epochs stop short of the target
    assert "deterministic: op determinism on" in out.stdout
    losses.append(re.findall(r"step \d+/\d+ +loss (\S+)", out.stdout))
  assert losses[0] and losses[0] == losses[1]
  assert (runs[0] / "weights_digest.rank0").read_text() == (runs[1] / "weights_digest.rank0").read_text()
  files = kernels.module_files("examples.vendor_kernels")
  want = {"module": "examples.vendor_kernels", "replaced": ["batch_norm", "gelu", "layer_norm"],
          "sha256": kernels.files_sha256(files)}
  assert json.loads((runs[0] / "run.json").read_text())["kernels"] == dict(want, files=sorted(files))
  events = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in (runs[0] / "mlperf.log").read_text().splitlines()
            if ":::MLLOG" in line]
  assert [e["value"] for e in events if e["key"] == kernels.MLLOG_KEY] == [want]
  ok, text = check_compliance(runs[0] / "mlperf.log", tmp_path)
  assert ok, text[-3000:]


@pytest.mark.slow
def test_replacement_is_visible_in_exported_hlo(tmp_path):
  prefix = tmp_path / "step"
  out = run_module("tf_gp2bm.bench", "--task=resnet", "--flagfile=flags/resnet/smoke.flags", "--resnet_depth=10",
                   "--bench_steps=2", f"--export_hlo={prefix}", "--kernels=kernel_plugins.scoped_batch_norm")
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
  assert "kernels replaced: ['batch_norm']" in out.stdout
  names = re.findall(r'op_name="([^"]*FusedBatchNorm[^"]*)"', (tmp_path / "step.hlo.txt").read_text())
  assert names and all("/acme_batch_norm/" in n for n in names), [n for n in names if "acme" not in n][:3]


@pytest.mark.slow
@pytest.mark.parametrize("plugin,message", [
    ("no_gradient", "--kernels=kernel_plugins.no_gradient: no gradient reaches "
                    "bert_encoder/embeddings/layer_norm/gamma:0 through the replaced hot spots (layer_norm)"),
    ("wrong_layout", "attention_core from kernel_plugins.wrong_layout returned [1,2,8,32] float32; expected "
                     "[1,8,2,32] float32"),  # at the model build, before any data is read
])
def test_a_broken_kernel_ends_the_run_as_bad_input_naming_it(demo_bert, tmp_path, plugin, message):
  out = run_train("--task=bert", "--flagfile=flags/bert/smoke.flags", *demo_bert.flags, "--seed=3",
                  f"--kernels=kernel_plugins.{plugin}", f"--output_dir={tmp_path}")
  assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
  assert message in out.stderr, out.stderr[-3000:]
