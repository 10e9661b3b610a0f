"""ResNet task end to end: the smoke run converges and passes the checker; 2 Horovod ranks agree; bad input."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from conftest import PYTHON, ROOT, check_compliance, require_horovod, run_train
from tf_gp2bm import dry_run
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.resnet import imagenet_input

SMOKE = ["--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags"]
# Cheaper model for the error-path runs: they stop early, so only start-up cost matters.
TINY = SMOKE + ["--resnet_depth=10", "--noxla"]


def _log_keys(path):
  lines = [json.loads(l.split(":::MLLOG ", 1)[1]) for l in open(path) if ":::MLLOG " in l]
  return lines


def test_full_size_model_parameter_count():
  from tf_gp2bm.tasks.resnet.model import build_resnet
  model = build_resnet(1000)
  trainable = sum(int(tf.size(v)) for v in model.trainable_variables)
  assert trainable == 25_557_032


@pytest.mark.slow
def test_smoke_run_converges_and_passes_checker(resnet_smoke_run, demo_imagenet, tmp_path):
  out, r, events = resnet_smoke_run.out, resnet_smoke_run.result, resnet_smoke_run.events
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  # The demo's train JPEGs carry restart markers and the default --image_op=auto picks the fused op.
  assert "train images: the fused decode-crop-flip-resize op" in r.stdout
  summary = json.loads((out / "run.json").read_text())
  assert summary["status"] == "success"
  best = max(acc for _, acc in summary["evals"])
  assert 0.759 <= best < 1.0
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report
  keys = [e["key"] for e in events]
  assert keys.index("init_stop") < keys.index("run_start") < keys.index("block_start")
  assert events[-1]["key"] == "run_stop" and events[-1]["metadata"]["status"] == "success"
  assert [e["value"] for e in events if e["key"] == "seed"] == [1234]
  # A finished run is never overwritten.
  again = run_train(*SMOKE, f"--data_dir={demo_imagenet}", f"--output_dir={out}")
  assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.slow
@pytest.mark.multiproc
def test_two_horovod_ranks_agree(demo_imagenet, tmp_path):
  require_horovod()
  out = tmp_path / "hvd"
  horovodrun = os.path.join(os.path.dirname(PYTHON), "horovodrun")
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1")
  r = subprocess.run([horovodrun, "--gloo", "-np", "2", PYTHON, "-m", "tf_gp2bm.train", *SMOKE,
                      f"--data_dir={demo_imagenet}", f"--output_dir={out}", "--weights_digest", "--seed=7"],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert "horovod: rank 0/2" in r.stdout
  digests = [(out / f"weights_digest.rank{i}").read_text() for i in range(2)]
  assert digests[0] == digests[1]
  assert sorted(p.name for p in out.iterdir() if p.name.endswith(".log")) == ["mlperf.log"]
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report


def _copy_data(src, dst):
  shutil.copytree(src, dst)
  return dst


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing_dir", "empty_dir", "missing_files"])
def test_bad_data_dir_fails_before_run(case, demo_imagenet, tmp_path):
  data = tmp_path / "data"
  if case == "empty_dir":
    data.mkdir()
  elif case == "missing_files":
    _copy_data(demo_imagenet, data)
    for p in data.glob("train-*"):
      p.unlink()
  r = run_train(*TINY, f"--data_dir={data}", f"--output_dir={tmp_path / 'run'}")
  assert r.returncode == 2, r.stderr[-2000:]
  expected = {"missing_dir": "directory does not exist", "empty_dir": "manifest not found",
              "missing_files": "train-00000-of-00008: missing"}[case]
  assert expected in r.stderr and str(data) in r.stderr
  events = _log_keys(tmp_path / "run" / "mlperf.log")
  assert "run_start" not in [e["key"] for e in events]


@pytest.mark.slow
def test_unknown_flag_value_is_rejected(demo_imagenet, tmp_path):
  r = run_train(*TINY, "--precision=fp8", f"--data_dir={demo_imagenet}", f"--output_dir={tmp_path / 'run'}")
  assert r.returncode != 0 and "precision" in r.stderr and "fp16" in r.stderr


@pytest.mark.slow
def test_head_must_match_label_convention(demo_imagenet, tmp_path):
  r = run_train(*TINY, "--num_classes=1000", f"--data_dir={demo_imagenet}", f"--output_dir={tmp_path / 'run'}")
  assert r.returncode == 2 and "--num_classes=1000 does not fit" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupt_record", "label_out_of_range"])
def test_bad_records_abort_the_run_naming_the_file(case, demo_imagenet, tmp_path):
  data = _copy_data(demo_imagenet, tmp_path / "data")
  manifest = json.loads((data / "manifest.json").read_text())
  if case == "corrupt_record":
    victim = data / "train-00003-of-00008"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
  else:
    # Records say 10 classes labelled 1..10; claim 9 so label 10 is out of range for a 9-class head.
    manifest["num_classes"] = 9
    (data / "manifest.json").write_text(json.dumps(manifest))
  extra = ["--num_classes=9"] if case == "label_out_of_range" else []
  r = run_train(*TINY, *extra, f"--data_dir={data}", f"--output_dir={tmp_path / 'run'}")
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
  if case == "corrupt_record":
    assert "train-00003-of-00008: corrupt TFRecord" in r.stderr
  else:
    assert "label out of range in" in r.stderr and str(data) in r.stderr
  events = _log_keys(tmp_path / "run" / "mlperf.log")
  assert events[-1]["key"] == "run_stop" and events[-1]["metadata"]["status"] == "aborted"


@pytest.mark.slow
def test_mirrored_strategy_path_on_two_cpu_replicas(demo_imagenet, tmp_path):
  """The tf.distribute fallback (no Horovod): MirroredStrategy over two logical CPU devices."""
  out = tmp_path / "mirrored"
  r = run_train(*SMOKE, "--distribution=mirrored", f"--data_dir={demo_imagenet}", f"--output_dir={out}",
                env={"GP2BM_CPU_REPLICAS": "2"})
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert "mirrored: rank 0/1, local rank 0, 2 replica(s)" in r.stdout
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report


def _smoke_task(data_dir, replicas=1, *extra):
  from tf_gp2bm import dry_run
  from tf_gp2bm.tasks.resnet.task import ResNetTask
  config = dry_run.parse_config("resnet", [f"--flagfile={ROOT}/flags/resnet/smoke.flags", f"--data_dir={data_dir}",
                                           *extra])
  return ResNetTask(dry_run.PlanningRuntime(replicas), config)


@pytest.mark.parametrize("split", ["validation", "train"])
def test_cut_shard_is_refused_at_init_from_the_manifest(split, demo_imagenet, tmp_path):
  data = _copy_data(demo_imagenet, tmp_path / "data")
  victim = sorted(data.glob(f"{split}-*"))[1]
  victim.write_bytes(victim.read_bytes()[:-100])  # a copy cut short: the records before the cut still parse
  task = _smoke_task(data)
  with pytest.raises(InputError, match=f"{victim}: .* bytes, .*manifest.json records"):
    task.check_inputs()
  _smoke_task(demo_imagenet).check_inputs()  # the intact folder passes


@pytest.mark.parametrize("flag,expected", [
    ("--global_batch_size=0", "--global_batch_size=0: expected an integer >= 1"),
    ("--accumulation_steps=0", "--accumulation_steps=0: expected an integer >= 1"),
    ("--base_learning_rate=-1", "--base_learning_rate=-1.0: expected a finite number > 0"),
    ("--weight_decay=nan", "--weight_decay=nan: expected a finite number >= 0"),
    ("--lars_momentum=1", "--lars_momentum=1.0: expected a number in \\[0, 1\\)"),
    ("--warmup_epochs=14", "--warmup_epochs=14.0: expected a number in \\[0, --train_epochs=14\\)"),
    ("--eval_offset_epochs=5", "--eval_offset_epochs=5: expected 1, 2, 3 or 4"),
    ("--image_size=8", "--image_size=8: expected an integer >= 32"),
    ("--resnet_depth=51", "--resnet_depth=51: expected one of"),
    ("--train_examples=0", "--train_examples=0: expected an integer >= 1"),
])
def test_numeric_flags_are_bounded(flag, expected, demo_imagenet):
  with pytest.raises(InputError, match=expected):
    _smoke_task(demo_imagenet, 1, flag)


@pytest.mark.parametrize("smoothing", [0.1, 0.0])
def test_loss_is_cross_entropy_on_smoothed_targets(smoothing, trainer_factory):
  """The task's loss on a fixed batch equals the reference's categorical cross-entropy of the softmax output against
  (1 - s) * one_hot + s / classes, averaged over the batch, computed here in NumPy from the same probabilities."""
  task = trainer_factory("resnet", "--resnet_depth=10", "--noxla", f"--label_smoothing={smoothing}",
                         build=False).task
  model = task.build_model()
  tf.random.set_seed(5)
  head = [v for v in model.trainable_variables if v.shape.rank == 2][-1]  # the Dense head's kernel
  head.assign(tf.random.normal(head.shape, stddev=0.3))  # confident, unequal outputs: smoothing changes the loss
  batch = task.synthetic_batch(training=True)
  loss = float(task.loss(model, batch))
  # Batch norm in training mode normalises with the batch's own statistics: the same probabilities again.
  probs = model(imagenet_input.normalize(batch["image"], tf.float32), training=True).numpy().astype(np.float64)
  classes = probs.shape[-1]
  targets = (1 - smoothing) * np.eye(classes)[batch["label"].numpy()] + smoothing / classes
  want = float(np.mean(-(targets * np.log(probs)).sum(-1)))
  assert loss == pytest.approx(want, rel=1e-5)
  # The smoothing term is large enough here for a wrong smoothing to be seen.
  plain = float(np.mean(-np.log(probs[np.arange(len(probs)), batch["label"].numpy()])))
  other = (1 - 0.1) * plain + 0.1 * float(np.mean(-np.log(probs).mean(-1)))
  assert abs(other - plain) > 0.01 * abs(plain)


def test_closed_flagfiles_smooth_labels_by_the_references_0_1():
  """Label smoothing is not logged, so no log check sees it: the closed flagfiles must carry the reference's 0.1."""
  for path in sorted((ROOT / "flags" / "resnet").glob("*gpu.flags")):
    assert dry_run.parse_config("resnet", [f"--flagfile={path}"]).label_smoothing == 0.1, path


def test_eval_counts_only_weighted_images(trainer_factory):
  """Ranks pad their last eval batch with weight-0 images: labels that the model gets right on every padded image
  and on half of the real ones give exactly the real hits."""
  task = trainer_factory("resnet", "--resnet_depth=10", "--noxla", "--eval_batch_size=12", build=False).task
  model = task.build_model()
  tf.random.set_seed(6)
  batch = task.synthetic_batch(training=False)
  top = model(imagenet_input.normalize(batch["image"], tf.float32), training=False).numpy().argmax(-1)
  rows = np.arange(len(top))
  weight = (rows < 8).astype(np.float32)  # the last 4 images are padding
  right = (weight == 0) | (rows % 2 == 0)
  labels = np.where(right, top, (top + 1) % 10).astype(np.int32)
  correct, count = task.eval_counts(model, dict(batch, label=tf.constant(labels), weight=tf.constant(weight)))
  assert (float(correct), float(count)) == (4.0, 8.0)  # not 8 hits: the 4 padded ones weigh 0


def test_inputs_are_centred_by_the_references_rgb_channel_means():
  """The reference subtracts _R_MEAN 123.68, _G_MEAN 116.78, _B_MEAN 103.94 from the RGB channels, no std division."""
  pixel = tf.constant([[[[200, 100, 50]]]], tf.uint8)
  np.testing.assert_allclose(imagenet_input.normalize(pixel, tf.float32).numpy().ravel(),
                             [200 - 123.68, 100 - 116.78, 50 - 103.94], rtol=1e-6)
