r"""Converts the reference phase-1 TF1 checkpoint to a checkpoint of our model (slots dropped), strictly.

    python -m data_prep.bert_checkpoint convert --tf1_checkpoint=/data/bert/phase1/model.ckpt-28252 \
        --bert_config=/data/bert/phase1/bert_config.json --out=/data/bert/phase1_tf2

Writes OUT/model.{index,data-*} (tf.train.Checkpoint of the model), OUT/bert_config.json and OUT/conversion.json
(reference name -> model variable, shapes). Every model variable must come from the checkpoint with the right
shape; anything missing or left over (other than optimizer state) is an error naming each variable (exit 2).
The result is read back into a fresh model and compared value by value before the command succeeds.
`--init_checkpoint` of the BERT task accepts either the TF1 checkpoint or OUT; the converted one loads faster
(1.3 GB instead of 4 GB with the LAMB slots).
"""
import glob
import json
import os

import numpy as np
import tensorflow as tf

from data_prep import output_lock
from tf_gp2bm.errors import InputError
from tf_gp2bm.files import atomic_output, check_out_apart, check_readable, read_json, write_json_atomic
from tf_gp2bm.formats import bert_checkpoint as identity
from tf_gp2bm.tasks.bert import checkpoint, model as bert_model, sizes as bert_sizes


def source_manifest(prefix, log=print):
  """The source's checkpoint_manifest.json when it still vouches for the files (else None, said aloud), so a
  closed run can trust the converted copy without the source."""
  path = os.path.join(os.path.dirname(os.path.abspath(prefix)), identity.CHECKPOINT_MANIFEST)
  if not os.path.exists(path):
    log(f"note: {prefix} is not verified ({path} not found): closed runs will refuse the conversion; run "
        "`python -m data_prep.bert_checkpoint verify` on the source first, then convert again")
    return None
  try:
    manifest = read_json(path)
    identity.require_verified(prefix, expected=manifest.get("expected"))
  except (InputError, ValueError) as e:
    log(f"note: {path} does not vouch for the source ({e}); closed runs will refuse the conversion")
    return None
  return manifest


def _check_inputs_and_out(prefix, bert_config, out):
  """The checkpoint's files and the config are readable, and --out holds none of them (nor is their folder): the
  conversion writes bert_config.json and model.* there."""
  inputs = [("--tf1_checkpoint", path) for path in sorted(glob.glob(glob.escape(prefix) + ".*"))]
  if bert_config not in bert_sizes.NAMED:
    inputs.append(("--bert_config", bert_config))
  for flag, path in inputs:
    check_readable(path, flag)
  check_out_apart(out, inputs)


def convert(tf1_checkpoint, bert_config, out, log=print):
  if bert_config not in bert_sizes.NAMED and bert_config and os.path.lexists(bert_config):
    check_readable(bert_config, "--bert_config")
  config = bert_model.load_config(bert_config)
  kind, prefix = checkpoint.resolve(tf1_checkpoint)
  if kind != "tf1":
    raise InputError(f"--tf1_checkpoint={tf1_checkpoint}: not a reference TF1 checkpoint (no "
                     f"{checkpoint.WORD_EMBEDDINGS})")
  _check_inputs_and_out(prefix, bert_config, out)
  with output_lock.holding(out, "python -m data_prep.bert_checkpoint convert"):
    return _convert(config, prefix, out, log)


def _convert(config, prefix, out, log):
  model = bert_model.build_bert(config)
  values = checkpoint.read_tf1(model, prefix)
  mapping = {}
  for var in model.variables:
    var.assign(values[var.ref()])
    name, shape = checkpoint.reference_name(var)
    mapping[name] = {"variable": checkpoint.model_key(var), "reference_shape": list(shape),
                     "shape": var.shape.as_list()}
  os.makedirs(out, exist_ok=True)
  conversion = os.path.join(out, identity.CONVERSION)
  if os.path.exists(conversion):
    os.remove(conversion)  # it vouches for the files below only once they are read back
  path = tf.train.Checkpoint(model=model).write(os.path.join(out, checkpoint.TF2_PREFIX))
  with atomic_output(os.path.join(out, "bert_config.json")) as tmp:  # a new file: never written through a link
    with open(tmp, "w") as f:
      json.dump(config.to_json(), f, indent=2)
  # Read back into a fresh model: the converted checkpoint must reproduce every value exactly.
  check = bert_model.build_bert(config)
  checkpoint.load_initial_checkpoint(check, out)
  for a, b in zip(model.variables, check.variables):
    if not np.array_equal(a.numpy(), b.numpy()):
      raise RuntimeError(f"{out}: read-back differs at {a.name}")
  outputs = {n: os.path.getsize(os.path.join(out, n)) for n in sorted(os.listdir(out))
             if n.startswith((checkpoint.TF2_PREFIX + ".", "bert_config.json"))}
  write_json_atomic(conversion, {"source": os.path.abspath(prefix), "variables": mapping, "output_files": outputs,
                                 "source_manifest": source_manifest(prefix, log)})
  log(f"converted {len(mapping)} variables from {prefix} to {path} (read back and verified)")
  return path
