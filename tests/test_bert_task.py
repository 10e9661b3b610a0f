"""BERT task: eval cadence, full-size parameter count, eval sharding, the smoke run (converges, passes the 4.0.0
checker), 2 Horovod ranks agree, and bad input fails before any training step."""
import dataclasses
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from conftest import PYTHON, ROOT, check_compliance, require_horovod, run_train
from tf_gp2bm import dry_run, kernels
from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import bert_pretraining
from tf_gp2bm.tasks.bert import model as bert_model, pretraining_input, task as bert_task

SMOKE = ["--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags"]


def _events(path):
  return [json.loads(l.split(":::MLLOG ", 1)[1]) for l in open(path) if ":::MLLOG " in l]


# --- eval cadence ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gbs,samples", [(256, 150_016), (448, 150_080), (512, 150_016), (768, 150_528),
                                         (1024, 150_528), (2048, 151_552), (3072, 175_104), (4096, 176_128),
                                         (4608, 202_752)])
def test_eval_cadence(gbs, samples):
  assert bert_task.eval_every_steps(gbs) * gbs == samples


def _closed(**kw):
  """The closed unpacked 8xgpu configuration as its flagfile gives it, with `kw` replaced (not validated again)."""
  config = dry_run.parse_config("bert", [f"--flagfile={ROOT}/flags/bert/8xgpu_unpacked.flags"])
  return dataclasses.replace(config, **kw)


def _runtime(size=1):
  return dry_run.PlanningRuntime(size)


def _eval_set(demo_bert):
  return bert_pretraining.read_manifest(str(demo_bert.eval)).split("eval")


def test_closed_plan_stops_at_the_schedule_end():
  task = bert_task.BertTask(_runtime(8), _closed())
  plan = task.plan()
  assert [p.step for p in plan.eval_points[:2]] == [335, 670]
  assert plan.eval_points[0].epoch_num == plan.eval_points[0].samples == 150_080
  # The LR is 0 from 6,700 x 448 = 3,001,600 samples, which is the 20th eval: nothing is planned after it.
  assert plan.max_steps == 6700 and plan.eval_points[-1].samples == 3_001_600 and len(plan.eval_points) == 20
  capped = bert_task.BertTask(_runtime(8), _closed(max_samples=1_000_000)).plan()
  assert capped.eval_points[-1].samples >= 1_000_000 > capped.eval_points[-2].samples
  with pytest.raises(InputError, match="--max_samples=4500000: expected an integer in \\[1, 3,001,600\\]"):
    _closed(max_samples=4_500_000).validate(closed=True)


def test_closed_refuses_eval_at_start():
  args = [f"--flagfile={ROOT}/flags/bert/8xgpu.flags", "--eval_at_start"]
  with pytest.raises(InputError, match="--eval_at_start reads the eval set before run_start"):
    dry_run.parse_config("bert", args)
  assert dry_run.parse_config("bert", args + ["--noclosed"]).eval_at_start


# --- model -----------------------------------------------------------------------------------------------------
def reference_parameter_count(vocab=30522, hidden=1024, layers=24, inter=4096, positions=512, types_=2):
  """BERT-large as the reference modeling.py builds it, plus the pretraining heads of run_pretraining.py."""
  ln = 2 * hidden
  embeddings = vocab * hidden + positions * hidden + types_ * hidden + ln
  per_layer = 3 * (hidden * hidden + hidden) + (hidden * hidden + hidden) + ln \
      + (hidden * inter + inter) + (inter * hidden + hidden) + ln
  pooler = hidden * hidden + hidden
  mlm = hidden * hidden + hidden + ln + vocab          # transform, LayerNorm, output_bias (decoder tied)
  nsp = 2 * hidden + 2                                  # cls/seq_relationship output_weights + output_bias
  return embeddings + layers * per_layer + pooler + mlm + nsp


@pytest.mark.slow  # builds full-size BERT-large
def test_full_size_model_parameter_count():
  heads = (1024 * 1024 + 1024 + 2 * 1024 + 30522) + (2 * 1024 + 2)
  assert reference_parameter_count() - heads == 335_141_888  # the published BERT-large encoder size
  model = bert_model.build_bert(bert_model.LARGE, seq_length=8, predictions=2)
  trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  assert trainable == reference_parameter_count()
  assert len(model.variables) == len(model.trainable_variables)  # nothing unused, nothing untrained
  enc = model.encoder
  assert enc.get_embedding_table().shape == (30522, 1024)
  assert len(enc.transformer_layers) == 24
  assert model.get_layer("bert_encoder").get_config()["type_vocab_size"] == 2


# --- data ------------------------------------------------------------------------------------------------------
def _records_of(paths):
  return sorted(r.numpy() for r in tf.data.TFRecordDataset(paths))


def test_training_pass_reads_each_record_once_through_min_8_files(demo_bert):
  """As the reference: the record shuffle comes before repeat, so one pass's worth of examples is the whole shard
  once; the interleave reads min(8, files) files at once."""
  files = bert_pretraining.read_manifest(str(demo_bert.train)).split("train").paths
  ctx = tf.distribute.InputContext(2, 1)
  mine = files[1::2]
  want = _records_of(mine)
  ds = pretraining_input.train_dataset(files, ctx, 1, 64, 10, seed=3)
  got = [b["input_word_ids"].numpy()[0].tobytes() for b in ds.take(len(want))]
  parsed = [pretraining_input._to_model_inputs(tf.io.parse_single_example(r, bert_pretraining.feature_spec(64, 10)))
            ["input_word_ids"].numpy().tobytes() for r in want]
  assert sorted(got) == sorted(parsed)
  node = ds
  while not hasattr(node, "_cycle_length"):
    node = node._input_dataset  # noqa: SLF001  (tf.data keeps its structure private)
  assert int(node._cycle_length) == min(8, len(files))  # noqa: SLF001


# --- smoke run -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_run_converges_and_passes_checker(demo_bert, tmp_path):
  out = tmp_path / "run"
  r = run_train(*SMOKE, *demo_bert.flags, f"--output_dir={out}", "--seed=4321", "--eval_at_start")
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert "restored 46 variables from the reference TF1 checkpoint" in r.stdout
  assert "MLM accuracy of the initial checkpoint" in r.stdout
  summary = json.loads((out / "run.json").read_text())
  best = max(acc for _, acc in summary["evals"])
  assert summary["status"] == "success" and 0.720 <= best < 1.0
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report
  events = _events(out / "mlperf.log")
  value = {e["key"]: e["value"] for e in events}
  for key in ("opt_base_learning_rate", "opt_lamb_epsilon", "opt_learning_rate_training_steps",
              "opt_learning_rate_warmup_steps", "num_warmup_steps", "start_warmup_step", "opt_lamb_beta_1",
              "opt_lamb_beta_2", "opt_lamb_weight_decay_rate", "gradient_accumulation_steps", "global_batch_size",
              "eval_samples", "max_sequence_length", "max_predictions_per_seq",
              "opt_lamb_learning_rate_decay_poly_power", "train_samples", "opt_epsilon"):
    assert key in value, key
  evals = [e for e in events if e["key"] == "eval_accuracy"]
  assert [e["metadata"]["epoch_num"] for e in evals] == [1600 * (i + 1) for i in range(len(evals))]
  assert value["train_samples"] == evals[-1]["metadata"]["epoch_num"] == summary["samples_trained"]
  assert value["eval_samples"] == 166 and value["opt_lamb_learning_rate_decay_poly_power"] == 1.0
  blocks = [e for e in events if e["key"] == "block_start"]
  assert all(b["metadata"]["samples_count"] == 1600 for b in blocks)


@pytest.mark.slow
@pytest.mark.multiproc
def test_two_horovod_ranks_agree(demo_bert, tmp_path):
  require_horovod()
  out = tmp_path / "hvd"
  horovodrun = os.path.join(os.path.dirname(PYTHON), "horovodrun")
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  r = subprocess.run([horovodrun, "--gloo", "-np", "2", PYTHON, "-m", "tf_gp2bm.train", *SMOKE, *demo_bert.flags,
                      f"--output_dir={out}", "--weights_digest", "--seed=7"],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]  # horovodrun fails the job on a non-zero exit
  assert "horovod: rank 0/2" in r.stdout
  digests = [(out / f"weights_digest.rank{i}").read_text() for i in range(2)]
  assert digests[0] == digests[1]
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report


# --- bad input -------------------------------------------------------------------------------------------------
def _tiny_config(demo_bert, *extra):
  return dry_run.parse_config("bert", [f"--flagfile={ROOT}/flags/bert/smoke.flags", *demo_bert.flags, *extra])


def _tiny_task(demo_bert, **kw):
  return bert_task.BertTask(_runtime(), dataclasses.replace(_tiny_config(demo_bert), **kw))


def test_tiny_inputs_are_accepted(demo_bert):
  task = _tiny_task(demo_bert)
  task.check_inputs()
  assert task.eval_records == 166 and task.eval_examples == int(round(task.eval_weight)) > 166


def test_missing_eval_set(demo_bert, tmp_path):
  with pytest.raises(InputError, match="--eval_dir is required"):
    _tiny_task(demo_bert, eval_dir=None).check_inputs()
  with pytest.raises(InputError, match="nope/manifest.json: manifest not found"):
    _tiny_task(demo_bert, eval_dir=str(tmp_path / "nope")).check_inputs()
  (tmp_path / "empty").mkdir()
  with pytest.raises(InputError, match="empty/manifest.json: manifest not found"):
    _tiny_task(demo_bert, eval_dir=str(tmp_path / "empty")).check_inputs()
  with pytest.raises(InputError, match="lists no eval records"):  # the training folder given as the eval set
    _tiny_task(demo_bert, eval_dir=str(demo_bert.train)).check_inputs()


def test_eval_set_of_the_wrong_size(demo_bert):
  task = _tiny_task(demo_bert, closed=True)  # the closed size check on the demo's 166-example set
  with pytest.raises(InputError, match="166 eval examples, the closed division evaluates on exactly 10,000"):
    task.check_inputs()


def test_closed_run_refuses_an_unverified_checkpoint(demo_bert):
  """The demo checkpoint was never verified against the published phase-1 files: a closed run stops in init."""
  task = _tiny_task(demo_bert, closed=True)
  with pytest.raises(InputError, match=r"--init_checkpoint=.*model.ckpt-150: not verified \(.*checkpoint_manifest"
                                       r".json not found\); run `python -m data_prep.bert_checkpoint verify"):
    task.check_inputs()
  _tiny_task(demo_bert, closed=False).check_inputs()  # an open run may start from any checkpoint


@pytest.mark.parametrize("split", ["train", "eval"])
def test_cut_record_file_is_refused_at_init_from_the_manifest(split, demo_bert, tmp_path):
  folder = tmp_path / split
  shutil.copytree(getattr(demo_bert, split), folder)
  victim = sorted(p for p in folder.iterdir() if p.name != "manifest.json")[0]
  victim.write_bytes(victim.read_bytes()[:-50])  # a copy cut short: the records before the cut still parse
  flag = "data_dir" if split == "train" else "eval_dir"
  with pytest.raises(InputError, match=f"{victim}: .* bytes, .*manifest.json records"):
    _tiny_task(demo_bert, **{flag: str(folder)}).check_inputs()


def test_records_with_the_wrong_sequence_length(demo_bert):
  with pytest.raises(InputError, match=r"records of max_seq_length=64, max_predictions_per_seq=10; the run expects "
                                       r"48 and 10"):
    _tiny_task(demo_bert, max_seq_length=48).check_inputs()
  with pytest.raises(InputError, match=r"the run expects 64 and 12"):
    _tiny_task(demo_bert, max_predictions_per_seq=12).check_inputs()


def test_vocab_size_mismatch_with_checkpoint(demo_bert, tmp_path):
  config = dict(bert_model.TINY.to_json(), vocab_size=30522)
  path = tmp_path / "bert_config.json"
  path.write_text(json.dumps(config))
  with pytest.raises(InputError, match="word embeddings for 128 tokens, but the model .* has vocab_size 30522"):
    _tiny_task(demo_bert, bert_config=str(path)).check_inputs()


def test_closed_rejects_the_tiny_model(demo_bert):
  with pytest.raises(InputError, match="closed division trains BERT-large"):
    _tiny_config(demo_bert, "--closed")


def test_numeric_flags_are_bounded(demo_bert):
  for flag, message in (("--global_batch_size=0", "--global_batch_size=0: expected an integer >= 1"),
                        ("--train_steps=-5", "--train_steps=-5: expected an integer >= 1"),
                        ("--lamb_beta_2=1.5", "--lamb_beta_2=1.5: expected a number in"),
                        ("--lamb_epsilon=0", "--lamb_epsilon=0.0: expected a number in"),
                        ("--max_predictions_per_seq=65", "--max_predictions_per_seq=65: expected an integer in"),
                        ("--eval_batch_size=0", "--eval_batch_size=0: expected an integer >= 1")):
    with pytest.raises(InputError, match=message):
      _tiny_config(demo_bert, flag)


@pytest.mark.slow
def test_bad_input_exits_2_before_run_start(demo_bert, tmp_path):
  r = run_train(*SMOKE, *demo_bert.flags, "--max_seq_length=32", f"--output_dir={tmp_path / 'run'}")
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
  assert "records of max_seq_length=64, max_predictions_per_seq=10; the run expects 32 and 10" in r.stderr
  keys = [e["key"] for e in _events(tmp_path / "run" / "mlperf.log")]
  assert "run_start" not in keys and "init_stop" not in keys


def test_record_token_ids_and_parse_errors_are_diagnosed(demo_bert):
  top = bert_pretraining.read_manifest(str(demo_bert.train)).split("train").max_token_id
  assert 5 <= top < 128
  task = _tiny_task(demo_bert)
  parse = tf.errors.InvalidArgumentError(None, None, "Key: input_ids.  Can't parse serialized Example.")
  assert "unreadable BERT records" in task.diagnose_data_error(parse)
  assert task.diagnose_data_error(tf.errors.InvalidArgumentError(None, None, "Incompatible shapes")) is None


def test_loss_and_accuracy_follow_the_reference(demo_bert):
  task = _tiny_task(demo_bert)
  model = bert_model.build_bert(bert_model.TINY, seq_length=64, predictions=10)
  files = _eval_set(demo_bert).paths
  batch = next(iter(pretraining_input.eval_dataset(files, 166, tf.distribute.InputContext(), 8, 64, 10)))
  out = model(batch, training=False)
  logits = out["mlm_logits"].numpy().reshape(-1, 128).astype(np.float64)
  labels, w = batch["masked_lm_ids"].numpy().reshape(-1), batch["masked_lm_weights"].numpy().reshape(-1)
  log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
      - logits.max(-1, keepdims=True)
  nll = -log_probs[np.arange(len(labels)), labels]
  mlm = (w * nll).sum() / (w.sum() + 1e-5)
  nsp_logits = out["nsp_logits"].numpy().astype(np.float64)
  nsp_lp = nsp_logits - np.log(np.exp(nsp_logits).sum(-1, keepdims=True))
  nsp = -nsp_lp[np.arange(8), batch["next_sentence_labels"].numpy()].mean()
  assert float(task.loss(model, batch)) == pytest.approx(mlm + nsp, rel=1e-5)  # no dropout in the tiny config
  correct, count = task.eval_counts(model, batch)
  assert float(count) == w.sum() and float(correct) == (w * (logits.argmax(-1) == labels)).sum()


def test_gradients_clipped_per_micro_batch_to_global_norm_one(demo_bert):
  task = _tiny_task(demo_bert)
  grads = [tf.constant([3.0, 4.0]), tf.constant([[0.0, 12.0]])]  # global norm 13
  clipped = task.process_micro_gradients(grads)
  assert float(tf.linalg.global_norm(clipped)) == pytest.approx(1.0)
  np.testing.assert_allclose(clipped[0].numpy(), [3 / 13, 4 / 13], rtol=1e-6)
  small = [tf.constant([0.3, 0.4])]
  np.testing.assert_allclose(task.process_micro_gradients(small)[0].numpy(), [0.3, 0.4])


def test_masked_lm_accuracy_counts_only_the_weighted_slots(demo_bert):
  """Hand-made labels on the model's real logits: right on every weight-0 (padding) slot, right on every other
  weighted slot and wrong on the rest. The accuracy counts the weighted hits only, as the reference's
  tf.metrics.accuracy(weights=masked_lm_weights) does; the loss averages the weighted slots only."""
  task = _tiny_task(demo_bert)
  model = bert_model.build_bert(bert_model.TINY, seq_length=64, predictions=10)
  files = _eval_set(demo_bert).paths
  batch = next(iter(pretraining_input.eval_dataset(files, 166, tf.distribute.InputContext(), 8, 64, 10)))
  logits = model(batch, training=False)["mlm_logits"].numpy().reshape(-1, 128)
  top = logits.argmax(-1)
  slots = np.arange(len(top))
  weights = np.where(slots % 3 == 0, 0.0, 1.0).astype(np.float32)  # a third of the slots are padding
  right = (weights == 0) | (slots % 2 == 0)
  labels = np.where(right, top, (top + 1) % 128).astype(np.int32)
  shape = batch["masked_lm_ids"].shape
  batch = dict(batch, masked_lm_ids=tf.constant(labels.reshape(shape)),
               masked_lm_weights=tf.constant(weights.reshape(shape)))
  correct, count = task.eval_counts(model, batch)
  assert len(top) == 80 and float(count) == weights.sum() == 53
  assert float(correct) == (weights * right).sum() == 26  # not 53: the 27 padding slots are right but weigh 0
  # The masked-LM loss: weighted slots only, divided by their weight + 1e-5 (the reference's denominator).
  log_probs = logits.astype(np.float64) - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  nll = -log_probs[slots, labels]
  loss, _, _ = task._mlm(model, batch, training=False)[1]
  assert float(loss) == pytest.approx((weights * nll).sum() / (weights.sum() + 1e-5), rel=1e-5)


def test_masked_lm_loss_denominator_is_the_weight_sum_plus_1e_5():
  """The reference divides by sum(weights) + 1e-5: a slot of weight 1e-3 shows the 1e-5 at the 1 % level, and a
  batch of padding only gives a loss of 0, not 0/0."""
  logits = tf.constant([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
  labels = tf.constant([1, 2])
  nll = -tf.nn.log_softmax(logits).numpy()[[0, 1], [1, 2]]
  loss, correct, count = kernels.get("mlm_softmax_cross_entropy")(logits, labels, tf.constant([1e-3, 0.0]))
  assert float(loss) == pytest.approx(1e-3 * nll[0] / (1e-3 + 1e-5), rel=1e-5)
  assert (float(correct), float(count)) == (0.0, pytest.approx(1e-3))
  loss, correct, count = kernels.get("mlm_softmax_cross_entropy")(logits, labels, tf.zeros([2]))
  assert (float(loss), float(correct), float(count)) == (0.0, 0.0, 0.0)
