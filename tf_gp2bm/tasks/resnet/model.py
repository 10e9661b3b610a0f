"""ResNet-50 v1.5 from the TF model garden with the reference's stem and classifier head.

official.vision ResNet's BottleneckBlock puts the stride on the 3x3 conv (v1.5). The reference uses batch-norm
momentum 0.9 and epsilon 1e-5 (the garden defaults are 0.99/1e-3), he_normal conv init, and a Dense head with
RandomNormal(0.01) init whose softmax runs in float32. Its stem pads 3 pixels on every side and runs the 7x7/2
conv with 'valid' padding; the garden's 'same' padding puts 2 pixels before and 3 after, which shifts every window
by one pixel, so the stem is built here as the reference builds it.
"""
import tf_keras
from official.modeling import tf_utils
from official.vision.modeling.backbones import resnet

from tf_gp2bm.kernels.model_garden import swappable
from tf_gp2bm.tasks.resnet.config import CLOSED_DEPTH

STEM_PADDING = 3


class ReferenceStemResNet(resnet.ResNet):
  """The garden ResNet (v0 stem: conv, batch norm, ReLU, 3x3/2 max pool) with the reference's stem padding."""

  def _stem(self, inputs):
    filters = int(64 * (self._depth_multiplier if self._scale_stem else 1.0))
    x = tf_keras.layers.ZeroPadding2D(STEM_PADDING, name="conv1_pad")(inputs)
    x = tf_keras.layers.Conv2D(filters, 7, strides=2, padding="valid", use_bias=False,
                               kernel_initializer=self._kernel_initializer,
                               kernel_regularizer=self._kernel_regularizer, name="conv1")(x)
    x = self._norm(axis=self._bn_axis, momentum=self._norm_momentum, epsilon=self._norm_epsilon,
                   trainable=self._bn_trainable, synchronized=self._use_sync_bn)(x)
    x = tf_utils.get_activation(self._activation, use_keras_layer=True)(x)
    return tf_keras.layers.MaxPool2D(pool_size=3, strides=2, padding="same")(x)


def build_resnet(num_classes, image_size=224, depth=CLOSED_DEPTH, width=1.0):
  inputs = tf_keras.Input(shape=(image_size, image_size, 3), name="image")
  with swappable("BatchNormalization"):  # its forward goes through the batch_norm kernel hot spot
    backbone = ReferenceStemResNet(
        model_id=depth, input_specs=tf_keras.layers.InputSpec(shape=[None, image_size, image_size, 3]),
        depth_multiplier=width, norm_momentum=0.9, norm_epsilon=1e-5, kernel_initializer="he_normal")
  features = backbone(inputs)
  x = features[max(features, key=int)]
  x = tf_keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  x = tf_keras.layers.Dense(num_classes, kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
                            name="fc1000")(x)
  probs = tf_keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
  return tf_keras.Model(inputs, probs, name=f"resnet{depth}_v1_5")
