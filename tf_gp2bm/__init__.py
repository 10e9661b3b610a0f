"""tf_gp2bm: MLPerf Training closed-division ResNet-50 and BERT-large on one GPU node (TensorFlow/Keras)."""
import os

# The model garden is written against Keras 2 (tf_keras); set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.5.0"
