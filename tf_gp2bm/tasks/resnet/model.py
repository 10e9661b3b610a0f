"""ResNet-50 v1.5 from the TF model garden with the reference's classifier head.

official.vision ResNet's BottleneckBlock puts the stride on the 3x3 conv (v1.5). The reference uses batch-norm
momentum 0.9 and epsilon 1e-5 (the garden defaults are 0.99/1e-3), he_normal conv init, and a Dense head with
RandomNormal(0.01) init whose softmax runs in float32.
"""
import tf_keras
from official.vision.modeling.backbones import resnet

from tf_gp2bm.kernels.model_garden import swappable

CLOSED_DEPTH = 50


def build_resnet(num_classes, image_size=224, depth=CLOSED_DEPTH, width=1.0):
  inputs = tf_keras.Input(shape=(image_size, image_size, 3), name="image")
  with swappable("BatchNormalization"):  # its forward goes through the batch_norm kernel hot spot
    backbone = resnet.ResNet(
        model_id=depth, input_specs=tf_keras.layers.InputSpec(shape=[None, image_size, image_size, 3]),
        depth_multiplier=width, norm_momentum=0.9, norm_epsilon=1e-5, kernel_initializer="he_normal")
  features = backbone(inputs)
  x = features[max(features, key=int)]
  x = tf_keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  x = tf_keras.layers.Dense(num_classes, kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
                            name="fc1000")(x)
  probs = tf_keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
  return tf_keras.Model(inputs, probs, name=f"resnet{depth}_v1_5")
