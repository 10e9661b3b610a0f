"""BERT-large on Wikipedia 2020/01/01: the facts the driver needs (no TensorFlow here)."""
from tf_gp2bm.tasks.spec import TaskSpec

EVAL_EXAMPLES = 10_000

SPEC = TaskSpec(
    name="bert", benchmark="bert", title="BERT-large / Wikipedia 2020/01/01",
    target_accuracy=0.720, min_runs=10, score_weight=9.05, progress_unit="samples",
    eval_examples=EVAL_EXAMPLES, data_flags=("data_dir", "eval_dir", "init_checkpoint"))
