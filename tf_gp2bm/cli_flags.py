"""Flags shared by tf_gp2bm.train and tf_gp2bm.bench; each task module adds its own (see tasks/)."""
from absl import flags

from tf_gp2bm import tasks

flags.DEFINE_enum("task", None, tasks.names(), "Benchmark to train.")
flags.DEFINE_string("data_dir", None, "Training data (TFRecords + manifest.json written by data_prep).")
flags.DEFINE_string("output_dir", None, "Run directory; must not hold a previous run's mlperf.log.")
flags.DEFINE_integer("seed", None, "Random seed; drawn from os.urandom when not given (rules: must be logged).")
flags.DEFINE_enum("distribution", "auto", ["auto", "horovod", "mirrored", "none"],
                  "auto = horovod under horovodrun, mirrored with several local GPUs, else none.")
flags.DEFINE_enum("precision", "bf16", ["fp16", "bf16", "fp32"], "Compute precision (fp16 adds loss scaling).")
flags.DEFINE_bool("xla", True, "Compile the whole train step with XLA.")
flags.DEFINE_integer("steps_per_loop", 100, "Train steps per host call (no host sync inside).")
flags.DEFINE_string("kernels", None, "Module that registers vendor kernels (see docs/vendor_kernels.md).")
flags.DEFINE_bool("cache_clear", False, "Whether the page cache was dropped before this run (logged as is).")
flags.DEFINE_bool("closed", True, "Enforce closed-division settings (off only in the smoke configs).")
flags.DEFINE_string("submission_org", "GP2BM-vendor", "mllog submission_org.")
flags.DEFINE_string("submission_platform", "1xNODE", "mllog submission_platform (the system name).")
flags.DEFINE_enum("submission_status", "onprem", ["onprem", "cloud", "preview", "research"],
                  "mllog submission_status (ruleset 4.0.0 values).")
flags.DEFINE_bool("weights_digest", False, "Every rank writes a sha256 of its final weights (replica-consistency "
                  "checks).")
flags.DEFINE_string("config_name", "custom", "Name of the flagfile's configuration (recorded in run.json).")
tasks.define_all_flags()
