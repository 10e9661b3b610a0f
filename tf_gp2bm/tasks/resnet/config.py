"""ResNet-50 v1.5 configuration: the frozen Config (each field a flag of --task=resnet), its bounds and closed rules.
TensorFlow-free, so --help and flag errors answer before TensorFlow loads.

Rules source: the reference resnet-tf2 and the 4.0.0 closed_resnet ruleset. What a closed submission may tune is a
flag (defaults: the 4.0.0 RCP row for global batch 3264); what the rules fix is a constant here.
"""
import dataclasses
import math
from typing import Optional

from tf_gp2bm import data_service
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.base import TaskConfig, check, finite, param
from tf_gp2bm.tasks.resnet.spec import DEFAULT_EVAL_OFFSET_EPOCHS, EVAL_PERIOD_EPOCHS  # the rules', defined there

# --- fixed by the rules ---------------------------------------------------------------------------------------
LARS_END_LR, LARS_POLY_POWER, LARS_EPSILON, LARS_EETA = 1e-4, 2, 0.0, 0.001
CLOSED_DEPTH, CLOSED_IMAGE_SIZE, CLOSED_WIDTH = 50, 224, 1.0
CLOSED_LABEL_SMOOTHING = (0.0, 0.1)
CLOSED_NUM_CLASSES = (1000, 1001)          # 1001 = the reference records' background class kept in the head
IMAGE_OPS = ("auto", "fused", "tf")         # how the host makes a train image (same pixels; see jpeg_op)
GARDEN_DEPTHS = (10, 18, 26, 34, 50, 101, 152, 200, 270, 350, 420)  # the model garden's RESNET_SPECS (tested)


@dataclasses.dataclass(frozen=True)
class Config(TaskConfig):
  # --- tunable in the closed division ---------------------------------------------------------------------------
  lars_momentum: float = param(0.9, "LARS momentum.")
  warmup_epochs: float = param(2.0, "Epochs of linear learning-rate warm-up before the polynomial decay.")
  train_epochs: int = param(37, "Epochs the learning-rate schedule spans (the reference's train_epochs); the run's "
                            "last eval is this rounded up onto the eval grid.")
  eval_offset_epochs: int = param(DEFAULT_EVAL_OFFSET_EPOCHS, f"Epoch of the first eval (1..{EVAL_PERIOD_EPOCHS}); then "
                                  f"one every {EVAL_PERIOD_EPOCHS} epochs.")
  label_smoothing: float = param(0.1, "Label smoothing of the cross-entropy (closed: 0 or 0.1).")
  num_classes: int = param(1000, "Classifier outputs (1000, or 1001 with a background class).")
  image_op: str = param("auto", "How the host makes each train image: 'fused' (one C++ op, built on first use, "
                        "self-checked to give TensorFlow's pixels), 'tf' (TensorFlow's op chain), 'auto' (fused when "
                        "it builds and passes its self-check, else tf, saying why). Same pixels either way.",
                        choices=IMAGE_OPS)
  data_service: Optional[str] = param(
      None, "HOST:PORT of a tf.data service dispatcher (`python -m tf_gp2bm.data_service`): its workers read and "
      "augment the train images, each once per epoch across all ranks; eval stays local. Not with "
      "--deterministic (the service's delivery order is not reproducible).")
  # --- demo only (closed runs keep the defaults) ---------------------------------------------------------------
  image_size: int = param(CLOSED_IMAGE_SIZE, f"Input resolution in pixels (closed: {CLOSED_IMAGE_SIZE}).", fixed=True)
  resnet_depth: int = param(CLOSED_DEPTH, f"ResNet depth (closed: {CLOSED_DEPTH}).", fixed=True)
  width_multiplier: float = param(CLOSED_WIDTH, f"Channel width multiplier (closed: {CLOSED_WIDTH}).", fixed=True)
  train_examples: Optional[int] = param(
      None, "Train-set size that defines an epoch (demo data only; closed runs use the full ImageNet train set).",
      fixed="is for demo data only; closed runs use the full ImageNet train set")

  def check_values(self):
    super().check_values()
    check(finite(self.lars_momentum) and 0 <= self.lars_momentum < 1, "lars_momentum", self.lars_momentum,
          "a number in [0, 1)")
    check(self.train_epochs >= 1, "train_epochs", self.train_epochs, "an integer >= 1")
    check(finite(self.warmup_epochs) and 0 <= self.warmup_epochs < self.train_epochs, "warmup_epochs",
          self.warmup_epochs, f"a number in [0, --train_epochs={self.train_epochs})")
    check(1 <= self.eval_offset_epochs <= EVAL_PERIOD_EPOCHS, "eval_offset_epochs", self.eval_offset_epochs,
          "1, 2, 3 or 4 (the rules' first-eval offset)")
    check(finite(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing,
          "a number in [0, 1)")
    check(self.image_op in IMAGE_OPS, "image_op", self.image_op, " or ".join(IMAGE_OPS))
    if self.data_service is not None:
      data_service.check_address(self.data_service)
    check(self.num_classes >= 2, "num_classes", self.num_classes, "an integer >= 2")
    check(self.image_size >= 32, "image_size", self.image_size, "an integer >= 32 (the network downsamples 32x)")
    check(self.resnet_depth in GARDEN_DEPTHS, "resnet_depth", self.resnet_depth,
          f"one of {', '.join(map(str, GARDEN_DEPTHS))}")
    check(finite(self.width_multiplier) and self.width_multiplier > 0, "width_multiplier", self.width_multiplier,
          "a number > 0")
    check(self.train_examples is None or self.train_examples >= 1, "train_examples", self.train_examples,
          "an integer >= 1")

  def check_closed(self):
    if self.label_smoothing not in CLOSED_LABEL_SMOOTHING:
      raise InputError(f"--label_smoothing={self.label_smoothing}: the closed division allows 0 or 0.1")
    if self.num_classes not in CLOSED_NUM_CLASSES:
      raise InputError(f"--num_classes={self.num_classes}: the closed division uses 1000 or 1001")
    n = math.log2(self.weight_decay / 1e-4) if self.weight_decay > 0 else 0.5
    if abs(n - round(n)) > 1e-5:
      raise InputError(f"--weight_decay={self.weight_decay}: the closed division allows 1e-4 * 2^N")
    super().check_closed()
