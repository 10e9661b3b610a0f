"""Phase-1 checkpoint: the reference TF1 names -> our model's variables, restored strictly.

`load_initial_checkpoint(model, path)` accepts either
  * the reference TF1 checkpoint (`.../model.ckpt-28252`, names `bert/embeddings/word_embeddings`, ...), read by
    name and mapped here (attention kernels reshaped per head, NSP weights transposed), or
  * the output of `python -m data_prep.bert_checkpoint convert` (a TF2 checkpoint of the model, slots dropped).
Every model variable must be restored with its shape; a missing variable, a shape mismatch or a model weight in
the checkpoint that the model does not use (e.g. more layers) raises InputError naming each offender. Optimizer
state in the TF1 checkpoint (adam_m/adam_v slots, global_step, ...) is ignored; other entries outside the
bert/ and cls/ scopes are ignored and listed.

Identity (tf_gp2bm.formats.bert_checkpoint, re-exported here): `python -m data_prep.bert_checkpoint verify`
hashes the files once, offline; `require_verified` (metadata only) is what a closed run calls during init.
"""
import os
import re

import numpy as np
import tensorflow as tf

from tf_gp2bm.errors import InputError
from tf_gp2bm.formats.bert_checkpoint import require_verified  # noqa: F401  (the task's entry point to it)

TF2_PREFIX = "model"        # data_prep.bert_checkpoint writes DIR/model.{index,data-*}
WORD_EMBEDDINGS = "bert/embeddings/word_embeddings"
TF2_WORD_EMBEDDINGS = "model/masked_lm/embedding_table/.ATTRIBUTES/VARIABLE_VALUE"  # the table, tied to the MLM head

_OPTIMIZER_SUFFIXES = ("adam_m", "adam_v", "lamb_m", "lamb_v", "GradientAccumulator", "Momentum", "LAMB", "LAMB_1")
_OPTIMIZER_NAMES = ("global_step", "loss_scale", "good_steps", "current_loss_scale", "beta1_power", "beta2_power")
MODEL_SCOPES = ("bert/", "cls/")

_LAYER_MAP = (  # our name inside transformer/layer_N -> reference name inside bert/encoder/layer_N
    ("self_attention/query/", "attention/self/query/"),
    ("self_attention/key/", "attention/self/key/"),
    ("self_attention/value/", "attention/self/value/"),
    ("self_attention/attention_output/", "attention/output/dense/"),
    ("self_attention_layer_norm/", "attention/output/LayerNorm/"),
    ("intermediate/", "intermediate/dense/"),
    ("output_layer_norm/", "output/LayerNorm/"),
    ("output/", "output/dense/"),
)
_FIXED_MAP = {
    "bert_encoder/word_embeddings/embeddings": WORD_EMBEDDINGS,
    "bert_encoder/position_embedding/embeddings": "bert/embeddings/position_embeddings",
    "bert_encoder/type_embeddings/embeddings": "bert/embeddings/token_type_embeddings",
    "bert_encoder/embeddings/layer_norm/gamma": "bert/embeddings/LayerNorm/gamma",
    "bert_encoder/embeddings/layer_norm/beta": "bert/embeddings/LayerNorm/beta",
    "bert_encoder/pooler_transform/kernel": "bert/pooler/dense/kernel",
    "bert_encoder/pooler_transform/bias": "bert/pooler/dense/bias",
    "cls/predictions/output_bias/bias": "cls/predictions/output_bias",
    "cls/predictions/transform/dense/kernel": "cls/predictions/transform/dense/kernel",
    "cls/predictions/transform/dense/bias": "cls/predictions/transform/dense/bias",
    "cls/predictions/transform/LayerNorm/gamma": "cls/predictions/transform/LayerNorm/gamma",
    "cls/predictions/transform/LayerNorm/beta": "cls/predictions/transform/LayerNorm/beta",
    "next_sentence/kernel": "cls/seq_relationship/output_weights",
    "next_sentence/bias": "cls/seq_relationship/output_bias",
}


def model_key(var):
  """The variable's name without ':0' and without the outer model scope."""
  name = var.name.split(":")[0]
  return name[len("bert_pretraining/"):] if name.startswith("bert_pretraining/") else name


def reference_name(var):
  """(reference TF1 name, reference shape) of one model variable; raises KeyError for an unknown variable."""
  key, shape = model_key(var), tuple(var.shape.as_list())
  if key in _FIXED_MAP:
    name = _FIXED_MAP[key]
    return name, (shape[1], shape[0]) if key == "next_sentence/kernel" else shape
  m = re.fullmatch(r"bert_encoder/transformer/layer_(\d+)/(.*)", key)
  if not m:
    raise KeyError(key)
  rest = m.group(2) + "/"
  for ours, ref in _LAYER_MAP:
    if rest.startswith(ours):
      name = f"bert/encoder/layer_{m.group(1)}/{ref}{rest[len(ours):]}".rstrip("/")
      break
  else:
    raise KeyError(key)
  if re.search(r"self_attention/(query|key|value)/kernel$", key):   # [h, heads, head_dim] <- [h, h]
    shape = (shape[0], shape[1] * shape[2])
  elif re.search(r"self_attention/(query|key|value)/bias$", key):   # [heads, head_dim] <- [h]
    shape = (shape[0] * shape[1],)
  elif key.endswith("self_attention/attention_output/kernel"):      # [heads, head_dim, h] <- [h, h]
    shape = (shape[0] * shape[1], shape[2])
  return name, shape


def to_model_value(var, value):
  """Reference tensor -> the value of our variable (reshape per head, transpose the NSP weights)."""
  if model_key(var) == "next_sentence/kernel":
    value = np.transpose(value)
  return np.reshape(value, var.shape.as_list())


def is_optimizer_state(name):
  return name in _OPTIMIZER_NAMES or name.rsplit("/", 1)[-1] in _OPTIMIZER_SUFFIXES


def resolve(path):
  """('tf1' | 'tf2', checkpoint prefix) for --init_checkpoint (a prefix, or a directory holding one)."""
  if not path:
    raise InputError("--init_checkpoint is required: the phase-1 checkpoint (model.ckpt-28252 or the output of "
                     "`python -m data_prep.bert_checkpoint convert`)")
  prefix = path
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, TF2_PREFIX + ".index")):
      prefix = os.path.join(path, TF2_PREFIX)
    else:
      prefix = tf.train.latest_checkpoint(path)
      if prefix is None:
        raise InputError(f"--init_checkpoint={path}: directory holds no checkpoint")
  if not os.path.exists(prefix + ".index"):
    raise InputError(f"--init_checkpoint={path}: {prefix}.index not found (give the prefix, e.g. .../model.ckpt-28252)")
  try:
    names = dict(tf.train.list_variables(prefix))
  except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as e:
    raise InputError(f"--init_checkpoint={path}: unreadable checkpoint ({str(e).splitlines()[0]})") from None
  return ("tf1" if WORD_EMBEDDINGS in names else "tf2"), prefix


def checkpoint_vocab_size(path):
  """Rows of the word-embedding table in the checkpoint (for the vocab check before anything is built)."""
  kind, prefix = resolve(path)
  for name, shape in tf.train.list_variables(prefix):
    if (kind == "tf1" and name == WORD_EMBEDDINGS) or (kind == "tf2" and name == TF2_WORD_EMBEDDINGS):
      return int(shape[0])
  raise InputError(f"--init_checkpoint={path}: no word-embedding table in the checkpoint")


def _read_tensor(reader, prefix, name):
  try:
    return reader.get_tensor(name)
  except (tf.errors.OpError, IndexError, ValueError, RuntimeError) as e:  # a cut data file: IndexError
    raise InputError(f"checkpoint {prefix}: cannot read {name} ({str(e).splitlines()[0]}); the "
                     "checkpoint's data file is cut or corrupt (compare its size with the published one, or run "
                     "`python -m data_prep.bert_checkpoint verify`)") from None


def read_tf1(model, prefix):
  """{variable: value} for every model variable from a reference TF1 checkpoint; strict (see module doc)."""
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, IndexError, ValueError, RuntimeError) as e:
    raise InputError(f"checkpoint {prefix}: unreadable ({str(e).splitlines()[0]})") from None
  shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
  values, missing, wrong, used = {}, [], [], set()
  for var in model.variables:
    try:
      name, shape = reference_name(var)
    except KeyError:
      missing.append(f"{model_key(var)} (no reference name for this variable)")
      continue
    used.add(name)
    if name not in shapes:
      missing.append(name)
    elif shapes[name] != shape:
      wrong.append(f"{name}: checkpoint {list(shapes[name])}, model needs {list(shape)}")
    else:
      values[var.ref()] = to_model_value(var, _read_tensor(reader, prefix, name))
  # Left-over weights of the model scopes (e.g. more layers than the config) make the restore partial; anything
  # else that is not optimizer state (an unknown bookkeeping variable) is only reported.
  leftover = sorted(n for n in shapes if n not in used and not is_optimizer_state(n))
  unused = [n for n in leftover if n.startswith(MODEL_SCOPES)]
  ignored = [n for n in leftover if not n.startswith(MODEL_SCOPES)]
  if ignored:
    print(f"[tf_gp2bm] {prefix}: ignoring {len(ignored)} non-model checkpoint entr(y/ies): {', '.join(ignored)}",
          flush=True)
  problems = []
  if missing:
    problems.append(f"{len(missing)} model variable(s) not in the checkpoint: {', '.join(missing)}")
  if wrong:
    problems.append(f"{len(wrong)} shape mismatch(es): {'; '.join(wrong)}")
  if unused:
    problems.append(f"{len(unused)} checkpoint weight(s) the model has no variable for: {', '.join(unused)}")
  if problems:
    raise InputError(f"--init_checkpoint={prefix}: partial restore refused: " + " | ".join(problems))
  return values


def load_initial_checkpoint(model, path):
  """Restores every model variable from `path`; returns a one-line description. Raises InputError."""
  kind, prefix = resolve(path)
  if kind == "tf1":
    values = read_tf1(model, prefix)
    for var in model.variables:
      var.assign(values[var.ref()])
    return f"restored {len(values)} variables from the reference TF1 checkpoint {prefix}"
  ckpt = tf.train.Checkpoint(model=model)
  try:
    status = ckpt.read(prefix)
    status.assert_consumed()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise InputError(f"--init_checkpoint={prefix}: partial restore refused: {e}") from None
  except (IndexError, RuntimeError) as e:  # a cut data file
    raise InputError(f"checkpoint {prefix}: unreadable ({str(e).splitlines()[0]}); its data file is cut or "
                     "corrupt") from None
  return f"restored {len(model.variables)} variables from the converted checkpoint {prefix}"


def write_tf1_checkpoint(prefix, tensors):
  """Writes {reference name: numpy array} as a TF1 name-based checkpoint (tf.compat.v1 Saver), like the
  reference Estimator does. Used by data_prep.demo.bert and the tests."""
  v1 = tf.compat.v1
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  with tf.Graph().as_default():
    variables = [v1.Variable(np.asarray(value), name=name) for name, value in tensors.items()]
    saver = v1.train.Saver(variables)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      return saver.save(sess, prefix, write_meta_graph=False)


def reference_tensors(model):
  """{reference name: value} of a built model: the inverse mapping (our values in TF1 layout)."""
  out = {}
  for var in model.variables:
    name, shape = reference_name(var)
    value = var.numpy()
    if model_key(var) == "next_sentence/kernel":
      value = np.transpose(value)
    out[name] = np.reshape(value, shape)
  return out
