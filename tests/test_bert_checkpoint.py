"""Phase-1 checkpoint conversion: a generated TF1 checkpoint with the reference names and full-size shapes for one
layer (a 1-layer, hidden-1024 config, small vocab) loads with every value equal; any missing, misshapen or
left-over weight is an error naming it."""
import numpy as np
import pytest

from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.bert import checkpoint, model as bert_model

ONE_LAYER = bert_model.BertConfig(vocab_size=96, hidden_size=1024, num_hidden_layers=1, num_attention_heads=16,
                                  intermediate_size=4096, max_position_embeddings=512, type_vocab_size=2)


def reference_shapes(c, layers=None):
  """The TF1 names and shapes the reference modeling.py + run_pretraining.py create (written out here, not taken
  from the mapping under test)."""
  h, i, v = c.hidden_size, c.intermediate_size, c.vocab_size
  shapes = {"bert/embeddings/word_embeddings": (v, h), "bert/embeddings/token_type_embeddings": (2, h),
            "bert/embeddings/position_embeddings": (c.max_position_embeddings, h),
            "bert/embeddings/LayerNorm/gamma": (h,), "bert/embeddings/LayerNorm/beta": (h,),
            "bert/pooler/dense/kernel": (h, h), "bert/pooler/dense/bias": (h,),
            "cls/predictions/transform/dense/kernel": (h, h), "cls/predictions/transform/dense/bias": (h,),
            "cls/predictions/transform/LayerNorm/gamma": (h,), "cls/predictions/transform/LayerNorm/beta": (h,),
            "cls/predictions/output_bias": (v,),
            "cls/seq_relationship/output_weights": (2, h), "cls/seq_relationship/output_bias": (2,)}
  for n in range(c.num_hidden_layers if layers is None else layers):
    p = f"bert/encoder/layer_{n}/"
    for q in ("query", "key", "value"):
      shapes[p + f"attention/self/{q}/kernel"], shapes[p + f"attention/self/{q}/bias"] = (h, h), (h,)
    shapes.update({p + "attention/output/dense/kernel": (h, h), p + "attention/output/dense/bias": (h,),
                   p + "attention/output/LayerNorm/gamma": (h,), p + "attention/output/LayerNorm/beta": (h,),
                   p + "intermediate/dense/kernel": (h, i), p + "intermediate/dense/bias": (i,),
                   p + "output/dense/kernel": (i, h), p + "output/dense/bias": (h,),
                   p + "output/LayerNorm/gamma": (h,), p + "output/LayerNorm/beta": (h,)})
  return shapes


def write_reference(path, c, drop=(), reshape=None, layers=None, slots=True, extra=None):
  rng = np.random.default_rng(1)
  tensors = {n: rng.normal(size=s).astype(np.float32) for n, s in reference_shapes(c, layers).items()
             if n not in drop}
  if reshape:
    name, shape = reshape
    tensors[name] = rng.normal(size=shape).astype(np.float32)
  if slots:  # what an Estimator LAMB checkpoint also holds
    for n in list(tensors)[:5]:
      tensors[n + "/adam_m"] = np.zeros_like(tensors[n])
      tensors[n + "/adam_v"] = np.zeros_like(tensors[n])
    tensors["global_step"] = np.int64(28252)
  tensors.update(extra or {})
  return checkpoint.write_tf1_checkpoint(str(path), tensors), tensors


@pytest.fixture(scope="module")
def one_layer_model():
  return bert_model.build_bert(ONE_LAYER)


def _as_reference(var):
  """Our variable's value in the reference layout, derived from the model-garden layer semantics."""
  key, value = checkpoint.model_key(var), var.numpy()
  if key == "next_sentence/kernel":
    return value.T                                        # Dense [h, 2] vs output_weights [2, h] (matmul b=True)
  if "self_attention/" in key and key.split("/")[-2] in ("query", "key", "value"):
    return value.reshape(value.shape[0], -1) if value.ndim == 3 else value.reshape(-1)  # [h, heads, d] / [heads, d]
  if key.endswith("attention_output/kernel"):
    return value.reshape(-1, value.shape[-1])             # [heads, d, h]
  return value


def test_every_value_equal_after_loading(one_layer_model, tmp_path):
  prefix, tensors = write_reference(tmp_path / "model.ckpt-28252", ONE_LAYER)
  message = checkpoint.load_initial_checkpoint(one_layer_model, prefix)
  assert "restored" in message
  names = {checkpoint.reference_name(v)[0]: v for v in one_layer_model.variables}
  assert sorted(names) == sorted(reference_shapes(ONE_LAYER))  # one reference tensor per model variable
  for name, var in names.items():
    np.testing.assert_array_equal(_as_reference(var), tensors[name], err_msg=name)
  word = one_layer_model.encoder.get_embedding_table()
  np.testing.assert_array_equal(word.numpy(), tensors["bert/embeddings/word_embeddings"])  # MLM decoder is tied


def test_missing_variable_fails_with_its_name(one_layer_model, tmp_path):
  victim = "bert/encoder/layer_0/attention/self/key/bias"
  prefix, _ = write_reference(tmp_path / "model.ckpt-1", ONE_LAYER, drop=(victim,))
  with pytest.raises(InputError, match="partial restore refused: 1 model variable\\(s\\) not in the checkpoint: "
                     + victim):
    checkpoint.load_initial_checkpoint(one_layer_model, prefix)


@pytest.mark.slow  # a 1024-wide BERT: minutes on a small machine
def test_shape_mismatch_and_leftover_weights_fail(one_layer_model, tmp_path):
  prefix, _ = write_reference(tmp_path / "a" / "model.ckpt-1", ONE_LAYER,
                              reshape=("bert/encoder/layer_0/intermediate/dense/kernel", (1024, 3072)))
  with pytest.raises(InputError, match=r"intermediate/dense/kernel: checkpoint \[1024, 3072\], model needs "
                     r"\[1024, 4096\]"):
    checkpoint.load_initial_checkpoint(one_layer_model, prefix)
  prefix, _ = write_reference(tmp_path / "b" / "model.ckpt-1", ONE_LAYER, layers=2)  # a deeper checkpoint
  with pytest.raises(InputError, match="checkpoint weight\\(s\\) the model has no variable for: "
                     "bert/encoder/layer_1/"):
    checkpoint.load_initial_checkpoint(one_layer_model, prefix)


@pytest.mark.slow  # a 1024-wide BERT: minutes on a small machine
def test_converter_cli_round_trip(one_layer_model, tmp_path):
  import json
  from data_prep.bert_checkpoint import cli as bert_checkpoint
  prefix, tensors = write_reference(tmp_path / "ref" / "model.ckpt-28252", ONE_LAYER)
  config = tmp_path / "bert_config.json"
  config.write_text(json.dumps(ONE_LAYER.to_json()))
  assert bert_checkpoint.main(["convert", f"--tf1_checkpoint={prefix}", f"--bert_config={config}",
                               f"--out={tmp_path / 'out'}"]) == 0
  conversion = json.loads((tmp_path / "out" / "conversion.json").read_text())
  assert sorted(conversion["variables"]) == sorted(reference_shapes(ONE_LAYER))
  # The converted checkpoint loads into the task's model (strict TF2 restore) with the same values.
  assert "converted checkpoint" in checkpoint.load_initial_checkpoint(one_layer_model, str(tmp_path / "out"))
  for var in one_layer_model.variables:
    name = checkpoint.reference_name(var)[0]
    np.testing.assert_array_equal(_as_reference(var), tensors[name], err_msg=name)
  assert checkpoint.checkpoint_vocab_size(str(tmp_path / "out")) == 96
  # A broken source is refused with exit code 2 and the missing name.
  bad, _ = write_reference(tmp_path / "bad" / "model.ckpt-1", ONE_LAYER, drop=("cls/predictions/output_bias",))
  assert bert_checkpoint.main(["convert", f"--tf1_checkpoint={bad}", f"--bert_config={config}",
                               f"--out={tmp_path / 'out2'}"]) == 2


def test_lamb_exclusions_match_the_reference_names(one_layer_model):
  from tf_gp2bm.optimizers.lamb import EXCLUDE, LAMB
  opt = LAMB(lambda step: 0.0)
  for var in one_layer_model.trainable_variables:
    reference = checkpoint.reference_name(var)[0]
    assert opt.excluded(var) == any(k in reference for k in EXCLUDE), (var.name, reference)


def test_non_model_entries_are_ignored_and_listed(one_layer_model, tmp_path, capsys):
  prefix, _ = write_reference(tmp_path / "model.ckpt-1", ONE_LAYER, extra={"bookkeeping/counter": np.int64(3)})
  checkpoint.load_initial_checkpoint(one_layer_model, prefix)
  assert "ignoring 1 non-model checkpoint entr(y/ies): bookkeeping/counter" in capsys.readouterr().out


def _ln(x, gamma, beta, eps=1e-12):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def reference_forward(t, c, ids, mask, segments, positions):
  """The reference modeling.py + run_pretraining.py heads in NumPy (no dropout), from TF1 tensors."""
  b, s = ids.shape
  nh, hd = c.num_attention_heads, c.hidden_size // c.num_attention_heads
  x = t["bert/embeddings/word_embeddings"][ids] + t["bert/embeddings/token_type_embeddings"][segments] \
      + t["bert/embeddings/position_embeddings"][:s][None]
  x = _ln(x, t["bert/embeddings/LayerNorm/gamma"], t["bert/embeddings/LayerNorm/beta"])
  adder = (1.0 - mask[:, None, None, :]) * -10000.0
  for n in range(c.num_hidden_layers):
    p = f"bert/encoder/layer_{n}/"
    heads = lambda name: (x @ t[p + f"attention/self/{name}/kernel"] + t[p + f"attention/self/{name}/bias"]) \
        .reshape(b, s, nh, hd).transpose(0, 2, 1, 3)  # noqa: E731  (transpose_for_scores)
    q, k, v = heads("query"), heads("key"), heads("value")
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + adder
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, nh * hd)
    attn = ctx @ t[p + "attention/output/dense/kernel"] + t[p + "attention/output/dense/bias"]
    attn = _ln(attn + x, t[p + "attention/output/LayerNorm/gamma"], t[p + "attention/output/LayerNorm/beta"])
    inter = _gelu(attn @ t[p + "intermediate/dense/kernel"] + t[p + "intermediate/dense/bias"])
    out = inter @ t[p + "output/dense/kernel"] + t[p + "output/dense/bias"]
    x = _ln(out + attn, t[p + "output/LayerNorm/gamma"], t[p + "output/LayerNorm/beta"])
  pooled = np.tanh(x[:, 0] @ t["bert/pooler/dense/kernel"] + t["bert/pooler/dense/bias"])
  gathered = np.take_along_axis(x, positions[..., None], axis=1)
  h = _gelu(gathered @ t["cls/predictions/transform/dense/kernel"] + t["cls/predictions/transform/dense/bias"])
  h = _ln(h, t["cls/predictions/transform/LayerNorm/gamma"], t["cls/predictions/transform/LayerNorm/beta"])
  mlm = h @ t["bert/embeddings/word_embeddings"].T + t["cls/predictions/output_bias"]
  nsp = pooled @ t["cls/seq_relationship/output_weights"].T + t["cls/seq_relationship/output_bias"]
  return mlm, nsp


def test_loaded_model_computes_what_the_reference_computes(tmp_path):
  c = bert_model.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
  rng = np.random.default_rng(3)
  tensors = {n: (rng.normal(size=s) * 0.5).astype(np.float32) for n, s in reference_shapes(c).items()}
  prefix = checkpoint.write_tf1_checkpoint(str(tmp_path / "model.ckpt-5"), tensors)
  model = bert_model.build_bert(c)
  checkpoint.load_initial_checkpoint(model, prefix)
  ids = rng.integers(0, 50, size=(3, 12))
  mask = np.ones((3, 12), np.int64)
  mask[1, 8:] = 0
  segments = (np.arange(12)[None] >= 6).astype(np.int64).repeat(3, 0)
  positions = rng.integers(0, 8, size=(3, 4))
  out = model({"input_word_ids": ids, "input_mask": mask, "input_type_ids": segments,
               "masked_lm_positions": positions}, training=False)
  mlm, nsp = reference_forward({k: v.astype(np.float64) for k, v in tensors.items()}, c, ids, mask, segments,
                               positions)
  np.testing.assert_allclose(out["mlm_logits"].numpy(), mlm, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(out["nsp_logits"].numpy(), nsp, rtol=2e-4, atol=2e-4)


def _expected_table(folder, prefix_name):
  """The identity table of a generated checkpoint, computed here as a downloader's md5sum would."""
  import hashlib
  import os
  table = {}
  for name in ("bert_config.json", f"{prefix_name}.data-00000-of-00001"):
    data = (folder / name).read_bytes()
    table[name] = {"bytes": len(data), "md5": hashlib.md5(data).hexdigest()}
  table[f"{prefix_name}.index"] = {"bytes": None, "md5": None}
  assert os.path.exists(folder / f"{prefix_name}.index")
  return table


def test_verify_writes_the_manifest_closed_runs_require(one_layer_model, tmp_path):
  """verify against a table given by --expected (the published one is for the 4 GB checkpoint), then
  require_verified: metadata only, refusing another table, a changed size, an unverified or converted-unverified
  checkpoint."""
  import json
  from data_prep.bert_checkpoint import cli
  folder = tmp_path / "phase1"
  prefix, _ = write_reference(folder / "model.ckpt-7", ONE_LAYER)
  (folder / "bert_config.json").write_text(json.dumps(ONE_LAYER.to_json()))
  table = _expected_table(folder, "model.ckpt-7")
  expected = tmp_path / "expected.json"
  expected.write_text(json.dumps(table))
  with pytest.raises(InputError, match="not verified .*checkpoint_manifest.json not found"):
    checkpoint.require_verified(prefix, expected=table)
  assert cli.main(["verify", f"--checkpoint_dir={folder}"]) == 2  # the published names and sizes: no match
  assert cli.main(["verify", f"--checkpoint_dir={folder}", f"--expected={expected}"]) == 0
  manifest = json.loads((folder / "checkpoint_manifest.json").read_text())
  assert manifest["passed"] and manifest["expected"] == table
  assert manifest["files"]["bert_config.json"]["md5"] == table["bert_config.json"]["md5"]
  assert checkpoint.require_verified(prefix, expected=table).endswith("checkpoint_manifest.json")
  with pytest.raises(InputError, match="checked against another table"):
    checkpoint.require_verified(prefix)  # a closed run wants the published table
  # Converted from the verified source: the conversion carries the source's manifest and its own sizes.
  assert cli.main(["convert", f"--tf1_checkpoint={prefix}", f"--bert_config={folder / 'bert_config.json'}",
                   f"--out={tmp_path / 'tf2'}"]) == 0
  assert checkpoint.require_verified(str(tmp_path / "tf2"), expected=table)
  data = next((tmp_path / "tf2").glob("model.data-*"))
  data.write_bytes(data.read_bytes()[:-1])
  with pytest.raises(InputError, match=r"model.data-.* is [\d,]+ bytes, .*conversion.json recorded"):
    checkpoint.require_verified(str(tmp_path / "tf2"), expected=table)
  # A changed byte in the source: verify fails, names the file, and removes the old manifest.
  config = folder / "bert_config.json"
  config.write_text(config.read_text().replace("96", "97"))
  assert cli.main(["verify", f"--checkpoint_dir={folder}", f"--expected={expected}"]) == 2
  assert not (folder / "checkpoint_manifest.json").exists()
  with pytest.raises(InputError, match="not verified"):
    checkpoint.require_verified(prefix, expected=table)
