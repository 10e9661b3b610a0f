"""BERT model sizes: the reference bert_config.json fields, the named sizes (large, tiny) and --bert_config reading.

TensorFlow-free, so the config layer can validate --bert_config (and the closed division's BERT-large) without
loading the model.
"""
import dataclasses
import json
import os

from tf_gp2bm.errors import InputError


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The reference bert_config.json fields we use (hidden_act is always the tanh GELU)."""
  vocab_size: int = 30522
  hidden_size: int = 1024
  num_hidden_layers: int = 24
  num_attention_heads: int = 16
  intermediate_size: int = 4096
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02

  def to_json(self):
    return dict(dataclasses.asdict(self), hidden_act="gelu")


LARGE = BertConfig()
# The smoke model: same code path, sizes for a few CPU seconds per run (vocab = data_prep.demo.bert's vocab).
TINY = BertConfig(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                  max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
NAMED = {"large": LARGE, "tiny": TINY}


def load_config(spec):
  """--bert_config: 'large', 'tiny' or a bert_config.json path (the reference file format)."""
  if spec in NAMED:
    return NAMED[spec]
  if not spec or not os.path.exists(spec):
    raise InputError(f"--bert_config={spec}: expected 'large', 'tiny' or an existing bert_config.json")
  try:
    with open(spec) as f:
      raw = json.load(f)
  except ValueError as e:
    raise InputError(f"--bert_config={spec}: not valid JSON ({e})") from None
  act = raw.get("hidden_act", "gelu")
  if act not in ("gelu", "gelu_new"):
    raise InputError(f"--bert_config={spec}: hidden_act {act!r}; the reference BERT uses gelu")
  fields = {f.name for f in dataclasses.fields(BertConfig)}
  missing = sorted(fields - set(raw))
  if missing:
    raise InputError(f"--bert_config={spec}: missing {', '.join(missing)}")
  return BertConfig(**{k: raw[k] for k in fields})
