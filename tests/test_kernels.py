"""The vendor kernel swap point: replacements land in the compiled step; identical ones change nothing."""
import importlib
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf_gp2bm import kernels
from tf_gp2bm.errors import InputError

EXPECTED = {"attention_core", "batch_norm", "gelu", "lamb_update", "lars_update", "layer_norm",
            "mlm_softmax_cross_entropy"}


@pytest.fixture(autouse=True)
def clean_registry():
  kernels.reset()
  for mod in [m for m in sys.modules if m.startswith("kernel_plugins.") or m == "examples.vendor_kernels"]:
    del sys.modules[mod]
  yield
  kernels.reset()


def _plugin(name):
  return importlib.import_module(f"kernel_plugins.{name}")


def test_every_named_hot_spot_has_a_documented_default():
  assert EXPECTED <= set(kernels.names())
  for name in kernels.names():
    assert kernels.get(name).__doc__.startswith(name + "(")


def test_bad_plugin_and_unknown_name_are_clear_errors():
  with pytest.raises(InputError, match="--kernels=no.such.module: cannot import"):
    kernels.load_plugin("no.such.module")
  with pytest.raises(InputError, match=r"register\('softmax'\): unknown hot spot; known: attention_core"):
    kernels.register("softmax", lambda x: x)


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
  return float(loss), grad.numpy()


def test_batch_norm_swap_lands_in_compiled_resnet_step():
  base_loss, base_grad = _resnet_loss()
  ident = _plugin("identity")
  loss, grad = _resnet_loss()
  assert ident.CALLS.get("batch_norm", 0) > 0
  assert loss == base_loss and np.array_equal(grad, base_grad)
  kernels.reset()
  _plugin("halve")
  halved, _ = _resnet_loss()
  assert halved != pytest.approx(base_loss, rel=1e-3)


def test_worked_example_matches_default_numerics():
  base_loss, base_grad = _resnet_loss()
  importlib.import_module("examples.vendor_kernels")
  assert set(kernels.replaced()) == {"batch_norm", "gelu"}
  loss, grad = _resnet_loss()
  assert loss == pytest.approx(base_loss, rel=1e-4)
  np.testing.assert_allclose(grad, base_grad, rtol=2e-3, atol=1e-5)


def _lars_result():
  from tf_gp2bm.optimizers.lars import LARS
  w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), name="dense/kernel")
  opt = LARS(lambda s: 0.1, momentum=0.9, weight_decay=1e-4).build([w])
  tf.function(opt.apply, jit_compile=True)([tf.ones((3, 4))])
  return w.numpy()


def test_lars_update_swap():
  base = _lars_result()
  _plugin("identity")
  assert np.array_equal(_lars_result(), base)
  kernels.reset()
  _plugin("halve")
  assert not np.allclose(_lars_result(), base)


def _bert_loss():
  from tf_gp2bm.tasks.bert.model import TINY, build_bert, dummy_inputs
  tf_keras.utils.set_random_seed(5)
  model = build_bert(TINY, seq_length=16, predictions=4)
  inputs = dummy_inputs(2, 16, 4)
  inputs["input_word_ids"] = tf.random.stateless_uniform([2, 16], [3, 4], 0, TINY.vocab_size, tf.int32)

  @tf.function(jit_compile=True)
  def step():
    out = model(inputs, training=False)
    return tf.reduce_mean(tf.square(out["mlm_logits"])) + tf.reduce_mean(tf.square(out["nsp_logits"]))
  return float(step())


def test_bert_layer_norm_and_attention_swaps_land_in_compiled_step():
  base = _bert_loss()
  ident = _plugin("identity")
  assert _bert_loss() == base
  assert ident.CALLS.get("layer_norm", 0) > 0 and ident.CALLS.get("attention_core", 0) > 0
  assert ident.CALLS.get("gelu", 0) > 0
  kernels.reset()
  _plugin("halve")
  assert _bert_loss() != pytest.approx(base, rel=1e-3)
