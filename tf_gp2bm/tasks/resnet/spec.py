"""ResNet-50 v1.5 on ImageNet: the facts the driver needs (no TensorFlow here)."""
from tf_gp2bm.tasks.spec import TaskSpec

IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000

SPEC = TaskSpec(
    name="resnet", benchmark="resnet", title="ResNet-50 v1.5 / ImageNet",
    target_accuracy=0.759, min_runs=5, score_weight=7.19, progress_unit="epochs",
    eval_examples=IMAGENET_VAL, data_flags=("data_dir",))
