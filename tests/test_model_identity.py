"""The models are the reference's: ResNet-50 v1.5 (stem, strides, batch norm, head init, the LARS split) against the
reference resnet_model.py construction, BERT-large's variables against the reference checkpoint's names and shapes
as modeling.py / run_pretraining.py create them. Oracles are written from the reference, not read from our code."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones.resnet import RESNET_SPECS

from tf_gp2bm.optimizers.lars import LARS
from tf_gp2bm.tasks.bert import checkpoint, model as bert_model
from tf_gp2bm.tasks.resnet import config as resnet_config
from tf_gp2bm.tasks.resnet.model import build_resnet


@pytest.fixture(scope="module")
def resnet50():
  tf_keras.utils.set_random_seed(0)
  return build_resnet(1000)


def _layers(model, kind):
  return [l for l in model._flatten_layers(include_self=False) if type(l).__name__ == kind  # noqa: SLF001
          or kind in [c.__name__ for c in type(l).__mro__]]


def _stem_conv(model):
  convs = [l for l in _layers(model, "Conv2D") if tuple(l.kernel_size) == (7, 7)]
  assert len(convs) == 1
  return convs[0]


def test_stem_is_the_references_pad_3_then_valid_conv(resnet50):
  """The reference: ZeroPadding2D(3) then a 7x7/2 'valid' conv. The garden's 'same' padding would put 2 pixels
  before and 3 after, shifting every window by one pixel: the outputs differ everywhere but the shape."""
  conv = _stem_conv(resnet50)
  backbone = next(l for l in resnet50.layers if isinstance(l, tf_keras.Model))
  stem = tf_keras.Model(backbone.input, conv.output)
  images = tf.random.stateless_uniform([2, 224, 224, 3], seed=[1, 2], minval=-1, maxval=1)
  kernel = conv.kernel
  reference = tf.nn.conv2d(tf_keras.layers.ZeroPadding2D(3)(images), kernel, strides=2, padding="VALID")
  ours = stem(images)
  assert ours.shape == reference.shape == (2, 112, 112, 64)
  np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)
  same = tf.nn.conv2d(images, kernel, strides=2, padding="SAME")
  assert not np.allclose(same.numpy(), reference.numpy(), atol=1e-3)  # the check can tell the two apart


def test_v1_5_puts_the_stride_on_the_3x3_conv(resnet50):
  convs = _layers(resnet50, "Conv2D")
  assert len(convs) == 53  # 1 stem + 16 blocks x 3 + 4 projection shortcuts
  strided = sorted((tuple(c.kernel_size), tuple(c.strides)) for c in convs if tuple(c.strides) != (1, 1))
  # The reference conv_block strides its 3x3 conv and its shortcut in stages 3, 4 and 5 (v1 strides the 1x1).
  assert strided == [((1, 1), (2, 2))] * 3 + [((3, 3), (2, 2))] * 3 + [((7, 7), (2, 2))]
  assert all(not c.use_bias for c in convs)
  assert all(isinstance(c.kernel_initializer, tf_keras.initializers.HeNormal) for c in convs)


def test_batch_norm_momentum_and_epsilon_are_the_references(resnet50):
  norms = _layers(resnet50, "BatchNormalization")
  assert len(norms) == 53
  assert {(n.momentum, n.epsilon) for n in norms} == {(0.9, 1e-5)}  # reference BATCH_NORM_DECAY / _EPSILON


def test_head_is_dense_initialised_from_normal_0_01(resnet50):
  dense = _layers(resnet50, "Dense")
  assert len(dense) == 1 and dense[0].units == 1000
  kernel, bias = dense[0].kernel.numpy(), dense[0].bias.numpy()
  assert kernel.shape == (2048, 1000) and not bias.any()
  assert abs(kernel.mean()) < 1e-4 and kernel.std() == pytest.approx(0.01, rel=0.01)
  assert resnet50.output.dtype == tf.float32  # softmax in float32 under mixed precision


def test_lars_adapts_kernels_and_skips_batch_norm_and_bias(resnet50):
  """The reference's skip_list (batch_normalization, bias, bn) on its variable names leaves out every batch-norm
  gamma/beta and the head's bias; every conv kernel and the head's kernel get the trust ratio and weight decay."""
  opt = LARS(lambda step: 0.1).build(resnet50.trainable_variables)
  kinds = {}
  for layer in _layers(resnet50, "Conv2D") + _layers(resnet50, "Dense") + _layers(resnet50, "BatchNormalization"):
    for var in layer.trainable_weights:
      kinds[var.ref()] = "adapt" if var is getattr(layer, "kernel", None) else "skip"
  assert len(kinds) == len(resnet50.trainable_variables) == 161
  ours = {v.ref(): "skip" if opt.excluded(v) else "adapt" for v in resnet50.trainable_variables}
  assert ours == kinds
  assert sum(k == "adapt" for k in ours.values()) == 54 and sum(k == "skip" for k in ours.values()) == 107


def test_depth_bound_matches_the_model_garden():
  assert resnet_config.GARDEN_DEPTHS == tuple(sorted(RESNET_SPECS))


def reference_bert_variables(layers=24, hidden=1024, inter=4096, vocab=30522, positions=512, type_vocab=2):
  """{name: shape} of the trainable variables modeling.py + run_pretraining.py create for BERT-large."""
  v = {"bert/embeddings/word_embeddings": (vocab, hidden),
       "bert/embeddings/token_type_embeddings": (type_vocab, hidden),
       "bert/embeddings/position_embeddings": (positions, hidden),
       "bert/embeddings/LayerNorm/gamma": (hidden,), "bert/embeddings/LayerNorm/beta": (hidden,),
       "bert/pooler/dense/kernel": (hidden, hidden), "bert/pooler/dense/bias": (hidden,),
       "cls/predictions/transform/dense/kernel": (hidden, hidden),
       "cls/predictions/transform/dense/bias": (hidden,),
       "cls/predictions/transform/LayerNorm/gamma": (hidden,), "cls/predictions/transform/LayerNorm/beta": (hidden,),
       "cls/predictions/output_bias": (vocab,),
       "cls/seq_relationship/output_weights": (2, hidden), "cls/seq_relationship/output_bias": (2,)}
  for i in range(layers):
    p = f"bert/encoder/layer_{i}/"
    for name in ("query", "key", "value"):
      v[p + f"attention/self/{name}/kernel"] = (hidden, hidden)
      v[p + f"attention/self/{name}/bias"] = (hidden,)
    v[p + "attention/output/dense/kernel"] = (hidden, hidden)
    v[p + "attention/output/dense/bias"] = (hidden,)
    v[p + "intermediate/dense/kernel"] = (hidden, inter)
    v[p + "intermediate/dense/bias"] = (inter,)
    v[p + "output/dense/kernel"] = (inter, hidden)
    v[p + "output/dense/bias"] = (hidden,)
    for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
      v[p + norm + "/gamma"] = (hidden,)
      v[p + norm + "/beta"] = (hidden,)
  return v


@pytest.mark.slow  # builds full-size BERT-large
def test_bert_large_variables_are_the_reference_checkpoints():
  model = bert_model.build_bert(bert_model.LARGE, seq_length=8, predictions=2)
  ours = {}
  for var in model.trainable_variables:
    name, shape = checkpoint.reference_name(var)
    assert name not in ours, f"two variables map to {name}"
    ours[name] = tuple(shape)
    assert int(np.prod(shape)) == int(np.prod(var.shape)), name
  assert ours == reference_bert_variables()
  assert len(ours) == 398
