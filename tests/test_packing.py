"""BERT sequence packing: first-fit-decreasing rows, conservation, and packed = unpacked for losses and gradients."""
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import BERT_VOCAB as VOCAB, ROOT, WIKI_SAMPLE as SAMPLE
from tf_gp2bm import kernels
from tf_gp2bm.runtime.factory import create_runtime
from tf_gp2bm.tasks.bert import model as bert_model, packing
from tf_gp2bm.tasks.bert.config import Config
from tf_gp2bm.tasks.bert.task import BertTask

SEQ, PREDS = 64, 10


def test_first_fit_decreasing_places_longest_first_in_the_first_row_with_room():
  rows = packing.first_fit_decreasing([300, 200, 512, 100, 250, 12, 212], 512, max_sequences=3)
  assert rows == [[2], [0, 6], [4, 1, 5], [3]]  # 250 opens row 2; 212 fills row 1; 12 joins the first row with room
  lengths = np.random.default_rng(0).integers(1, 513, 5000)
  rows = packing.first_fit_decreasing(lengths, 512, max_sequences=3)
  assert sorted(i for row in rows for i in row) == list(range(5000))
  assert all(len(row) <= 3 and sum(lengths[i] for i in row) <= 512 for row in rows)
  with pytest.raises(ValueError, match="1..512"):
    packing.first_fit_decreasing([513], 512)


def _examples(lengths, seed=0):
  """Unpacked examples in the reference layout: [CLS] a [SEP] b [SEP], masked positions sorted, padding zeros."""
  rng = np.random.default_rng(seed)
  out = []
  for n in lengths:
    ids = np.zeros(SEQ, np.int64)
    ids[:n] = rng.integers(5, 128, n)
    ids[0], ids[n - 1] = 2, 3
    segments = np.zeros(SEQ, np.int64)
    segments[n // 2:n] = 1
    count = min(PREDS, max(1, round(0.15 * n)))
    positions = np.zeros(PREDS, np.int64)
    positions[:count] = np.sort(rng.choice(np.arange(1, n - 1), count, replace=False))
    masked_ids = np.zeros(PREDS, np.int64)
    masked_ids[:count] = rng.integers(5, 128, count)
    weights = np.zeros(PREDS, np.float32)
    weights[:count] = 1.0
    out.append({"input_ids": ids, "input_mask": (np.arange(SEQ) < n).astype(np.int64), "segment_ids": segments,
                "masked_lm_positions": positions, "masked_lm_ids": masked_ids, "masked_lm_weights": weights,
                "next_sentence_labels": np.array([rng.integers(0, 2)])})
  return out


def _unpacked_batch(examples):
  stack = lambda k: tf.constant(np.stack([e[k] for e in examples]))  # noqa: E731
  return {"input_word_ids": tf.cast(stack("input_ids"), tf.int32), "input_mask": tf.cast(stack("input_mask"), tf.int32),
          "input_type_ids": tf.cast(stack("segment_ids"), tf.int32),
          "masked_lm_positions": tf.cast(stack("masked_lm_positions"), tf.int32),
          "masked_lm_ids": tf.cast(stack("masked_lm_ids"), tf.int32), "masked_lm_weights": stack("masked_lm_weights"),
          "next_sentence_labels": tf.cast(stack("next_sentence_labels")[:, 0], tf.int32)}


def _packed_batch(examples):
  rows = packing.pack(examples, SEQ, PREDS, np.random.default_rng(1))
  features = {k: tf.constant(np.stack([r[k] for r in rows])) for k in packing.FEATURES}
  return packing.to_model_inputs(features), len(rows)


@pytest.fixture(scope="module")
def task_and_model():
  kernels.reset()
  config = Config.defaults(bert_config="tiny", global_batch_size=8, base_learning_rate=1e-3, weight_decay=0.01,
                           train_steps=10, max_seq_length=SEQ, max_predictions_per_seq=PREDS, closed=False)
  task = BertTask(create_runtime("none"), config)
  tf.keras.utils.set_random_seed(0)
  return task, bert_model.build_bert(task.model_config, seq_length=SEQ, predictions=PREDS)


def test_packed_losses_and_gradients_equal_unpacked(task_and_model):
  task, model = task_and_model
  examples = _examples([64, 30, 21, 12, 40, 7, 50, 23])
  unpacked = _unpacked_batch(examples)
  packed, rows = _packed_batch(examples)
  assert rows < len(examples) and int(tf.reduce_sum(packed["next_sentence_weights"])) == len(examples)

  def losses_and_grads(batch):
    with tf.GradientTape() as tape:
      out, (mlm, correct, count) = task._mlm(model, batch, training=True)
      nsp = packing.next_sentence_loss(out["nsp_logits"], batch["next_sentence_labels"],
                                       batch.get("next_sentence_weights"))
      total = task.loss(model, batch)
    return (float(mlm), float(nsp), float(total), float(correct), float(count)), \
        tape.gradient(total, model.trainable_variables)

  (u, ug), (p, pg) = losses_and_grads(unpacked), losses_and_grads(packed)
  np.testing.assert_allclose(p, u, rtol=1e-5, atol=1e-6)
  assert u[4] == sum(float(e["masked_lm_weights"].sum()) for e in examples)
  for v, a, b in zip(model.trainable_variables, ug, pg):
    a, b = tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy()
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=v.name)


def test_packed_rows_attend_only_within_their_sequence(task_and_model):
  """Changing one sequence's tokens leaves the other sequences' outputs in the row untouched."""
  task, model = task_and_model
  examples = _examples([20, 20, 20])
  packed, rows = _packed_batch(examples)
  assert rows == 1
  before = model(packed, training=False)
  ids = packed["input_word_ids"].numpy()
  seq = packed["sequence_ids"].numpy()
  ids[seq == 2] = 7
  after = model(dict(packed, input_word_ids=tf.constant(ids)), training=False)
  nsp_b, nsp_a = before["nsp_logits"].numpy()[0], after["nsp_logits"].numpy()[0]
  changed = [k for k in range(3) if not np.allclose(nsp_b[k], nsp_a[k], atol=1e-6)]
  assert changed == [1]


# --- the pack stage on the Wikipedia sample (tests/data) ---------------------------------------------------------


@pytest.fixture(scope="module")
def sample_records(tmp_path_factory):
  """The WikiExtractor sample, cleaned, through the tfrecords stage (official 512/76, dupe factor 1)."""
  from data_prep.wikipedia.cli import main
  from data_prep.wikipedia.text import clean_file
  root = tmp_path_factory.mktemp("wiki")
  (root / "text").mkdir()
  for i, src in enumerate(SAMPLE):
    clean_file(src, root / "text" / f"part-{i:05d}-of-{len(SAMPLE):05d}")
  assert main(["tfrecords", f"--input={root / 'text'}", f"--vocab={VOCAB}", f"--out={root / 'records'}",
               "--dupe_factor=1", "--workers=2"]) == 0
  return root / "records"


def _sequences(path, unpacked):
  """Each sequence of a record file as (tokens, segments, masked positions within it, masked ids, label)."""
  from data_prep.bert_records import read_records
  from data_prep.wikipedia import pack
  out = []
  for serialized in read_records(str(path)):
    if unpacked:
      out.append(pack._input_identity(pack._example(serialized)))
    else:
      f = tf.train.Example.FromString(serialized).features.feature
      row = {k: np.asarray(getattr(f[k], f[k].WhichOneof("kind")).value) for k in packing.FEATURES}
      out.extend(pack._row_identities(row))
  return sorted(out)


@pytest.mark.slow
def test_pack_stage_conserves_every_sequence_and_packs_the_sample(sample_records, tmp_path, capsys):
  from data_prep.wikipedia.cli import main
  from tf_gp2bm.files import read_json
  out = tmp_path / "packed"
  assert main(["pack", f"--input={sample_records}", f"--out={out}", "--seed=7", "--workers=2"]) == 0
  manifest = read_json(str(out / packing.MANIFEST))
  source = read_json(str(sample_records / "manifest-tfrecords.json"))
  total = manifest["total"]
  assert total["sequences"] == source["total"]["count"] > 2000
  assert total["rows"] == sum(f["count"] for f in manifest["files"].values()) < total["sequences"]
  assert 1.08 < total["sequences"] / total["rows"] == pytest.approx(total["packing_factor"], abs=1e-4)
  for name in manifest["files"]:
    assert _sequences(out / name, unpacked=False) == _sequences(sample_records / name, unpacked=True), name
  assert "sequences per row" in capsys.readouterr().out

  again = tmp_path / "again"
  assert main(["pack", f"--input={sample_records}", f"--out={again}", "--seed=7", "--workers=1"]) == 0
  other = tmp_path / "other"
  assert main(["pack", f"--input={sample_records}", f"--out={other}", "--seed=8", "--workers=1"]) == 0
  digests = lambda d: {n: f["sha256"] for n, f in read_json(str(d / packing.MANIFEST))["files"].items()}  # noqa
  assert digests(again) == digests(out) and digests(other) != digests(out)

  name = sorted(manifest["files"])[1]
  (out / name).unlink()
  capsys.readouterr()
  assert main(["pack", f"--input={sample_records}", f"--out={out}", "--seed=7", "--workers=1"]) == 0
  assert "3 of 4 files already packed" in capsys.readouterr().err and digests(out) == digests(again)


def test_pack_stage_refuses_what_is_not_pretraining_records(tmp_path, capsys):
  from data_prep.wikipedia.cli import main
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "notes.bin").write_bytes(b"not a record file")
  assert main(["pack", f"--input={tmp_path / 'in'}", f"--out={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err
  assert "notes.bin" in err and "not BERT pretraining records" in err
  assert main(["pack", f"--input={tmp_path / 'empty'}", f"--out={tmp_path / 'out'}"]) == 2
  assert "no record files" in capsys.readouterr().err


@pytest.mark.slow
def test_packed_smoke_run_converges_with_a_compliant_log(demo_bert, tmp_path):
  """--packed on the packed demo records: every batch holds the unpacked batch's sequences, so the eval cadence and
  train_samples are the unpacked run's, and the log passes the checker."""
  import json
  from conftest import check_compliance, run_train
  from data_prep.wikipedia.cli import main as wikipedia
  packed = tmp_path / "packed"
  assert wikipedia(["pack", f"--input={demo_bert.train}", f"--out={packed}", "--workers=1"]) == 0
  factor = json.loads((packed / packing.MANIFEST).read_text())["total"]["packing_factor"]
  assert factor > 1.0
  flags = [f for f in demo_bert.flags if not f.startswith("--data_dir=")]
  out = tmp_path / "run"
  r = run_train("--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags", *flags, f"--data_dir={packed}",
                "--packed", f"--output_dir={out}", "--seed=4321")
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  ok, report = check_compliance(out / "mlperf.log", tmp_path)
  assert ok, report
  events = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in open(out / "mlperf.log") if ":::MLLOG " in line]
  evals = [e for e in events if e["key"] == "eval_accuracy"]
  train_samples = [e["value"] for e in events if e["key"] == "train_samples"]
  assert [e["metadata"]["epoch_num"] for e in evals] == [1600 * (i + 1) for i in range(len(evals))]
  assert train_samples == [evals[-1]["metadata"]["epoch_num"]] and evals[-1]["value"] >= 0.720


def test_pack_stage_writes_nothing_when_a_sequence_would_be_lost(tmp_path, monkeypatch, capsys):
  from data_prep.bert_records import write_examples
  from data_prep.wikipedia.cli import main
  examples = _examples([64, 30, 21, 12, 40, 7, 50, 23])
  unpadded = [{"input_ids": e["input_ids"][:n], "segment_ids": e["segment_ids"][:n],
               "masked_lm_positions": e["masked_lm_positions"][e["masked_lm_weights"] > 0],
               "masked_lm_ids": e["masked_lm_ids"][e["masked_lm_weights"] > 0],
               "next_sentence_labels": int(e["next_sentence_labels"][0])}
              for e, n in zip(examples, [64, 30, 21, 12, 40, 7, 50, 23])]
  (tmp_path / "in").mkdir()
  write_examples(str(tmp_path / "in" / "part-00000"), unpadded, SEQ, PREDS)
  assert main(["pack", f"--input={tmp_path / 'in'}", f"--out={tmp_path / 'ok'}", "--workers=1"]) == 0
  assert "8 sequences in 4 rows of 64 tokens" in capsys.readouterr().out  # 64 | 50+12 | 40+23 | 30+21+7
  real_pack = packing.pack
  monkeypatch.setattr(packing, "pack", lambda *a, **k: real_pack(*a, **k)[:-1])  # a packer that loses a row
  assert main(["pack", f"--input={tmp_path / 'in'}", f"--out={tmp_path / 'bad'}", "--workers=1"]) == 2
  assert "do not hold every sequence exactly once" in capsys.readouterr().err
  assert not (tmp_path / "bad" / "part-00000").exists()
