"""Prepares one exported train step (tf_gp2bm.bench --export_hlo=PREFIX) for step_timer.py on the GPU machine.

    python scripts/gpu/prepare_step.py PREFIX --task=bert [--packing_factor=2.0] [--precision=bf16] [--strip_metadata]

Writes PREFIX.step.json: the ENTRY parameters (dtype, shape), which outputs feed which parameters back (the
variables), how to make each batch input (real-shaped: valid token ids, masks of ones, labels in range), which
parameter holds the loss, and the step's precision and PyTorch peer (scripts/gpu/torch_peers.py --like). Rewrites
HLO `copy` instructions of PREFIX.hlo.pb as same-shape `reshape`s (some StableHLO
importers reject them; the computation is unchanged) and deletes PREFIX.hlo.txt, which the timer does not need
(150 MB for BERT-large, over what the device tool carries). Needs TensorFlow (its HLO proto); run it here.
"""
import argparse
import json
import os
import sys

from tensorflow.compiler.xla.service import hlo_pb2

IDS = 100  # token and label ids below every vocabulary and class count in use (tiny BERT: 128 tokens, ResNet: 10)
# The batch inputs, in the order tf.nest flattens the step's batch dict (sorted keys), and how to fill each.
# seq: the sequence length (the last dimension of input_word_ids); rows: the batch.
INPUTS = {
    "resnet": {"image": ("ints", 256), "label": ("ints", 10)},
    "bert": {"input_mask": ("ones",), "input_type_ids": ("ints", 2), "input_word_ids": ("ints", IDS),
             "masked_lm_ids": ("ints", IDS), "masked_lm_positions": ("ints", "seq"), "masked_lm_weights": ("ones",),
             "next_sentence_labels": ("ints", 2)},
    "bert_packed": {"cls_positions": ("zeros",), "input_type_ids": ("ints", 2), "input_word_ids": ("ints", IDS),
                    "masked_lm_ids": ("ints", IDS), "masked_lm_positions": ("ints", "seq"),
                    "masked_lm_weights": ("ones",), "next_sentence_labels": ("ints", 2),
                    "next_sentence_weights": ("ones",), "position_ids": ("arange",), "sequence_ids": ("ones",)},
}
DTYPES = {1: "pred", 2: "s8", 3: "s16", 4: "s32", 5: "s64", 6: "u8", 7: "u16", 8: "u32", 9: "u64", 10: "f16",
          11: "f32", 12: "f64", 16: "bf16"}


def entry_params(module):
  entry = next(c for c in module.computations if c.id == module.entry_computation_id)
  params = sorted((i.parameter_number, i) for i in entry.instructions if i.opcode == "parameter")
  return [[DTYPES[i.shape.element_type], list(i.shape.dimensions)] for _, i in params]


def aliases(module):
  return [[e.output_shape_index[0], e.parameter_number] for e in module.input_output_alias.entries]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("prefix")
  p.add_argument("--task", required=True, choices=("resnet", "bert"))
  p.add_argument("--packing_factor", type=float, default=1.0,
                 help="sequences per row of a packed BERT step: samples/s counts sequences, as the trainer does")
  p.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"),
                 help="the step's precision: the PyTorch peer (torch_peers.py --like) runs at the same")
  p.add_argument("--strip_metadata", action="store_true",
                 help="drop the HLO metadata (op names, source lines: only a profile reads them) to fit 64 MiB")
  args = p.parse_args(argv)
  pb = args.prefix + ".hlo.pb"
  module = hlo_pb2.HloModuleProto()
  with open(pb, "rb") as f:
    module.ParseFromString(f.read())
  params, alias = entry_params(module), aliases(module)
  state = {param for _, param in alias}
  batch = [i for i in range(len(params)) if i not in state]
  kind = args.task if not (args.task == "bert" and len(batch) == len(INPUTS["bert_packed"])) else "bert_packed"
  names = sorted(INPUTS[kind])
  if batch != list(range(len(names))):
    sys.exit(f"prepare_step.py: {pb}: expected the {len(names)} batch inputs of the {kind} step ({', '.join(names)}) "
             f"as the first parameters, found unaliased parameters {batch}")
  seq = params[names.index("input_word_ids")][1][-1] if "input_word_ids" in names else 0
  inputs = []
  for name in names:
    rule = INPUTS[kind][name]
    high = (seq if rule[1] == "seq" else rule[1]) if len(rule) > 1 else None
    inputs.append({"name": name, "fill": rule[0], "high": high})
  # Captured variables follow the batch in the order the step first uses them; the trainer's _apply adds the loss
  # to loss_sum and then counts skipped steps, the last two uses, so they are the last two parameters.
  loss_param, skipped_param = len(params) - 2, len(params) - 1
  for i in (loss_param, skipped_param):
    if params[i] != ["f32", []] or i not in state:
      sys.exit(f"prepare_step.py: {pb}: parameter {i} is {params[i]}, expected the trainer's f32[] loss_sum/skipped "
               "variables last (did Trainer._apply change?)")
  n = 0
  for comp in module.computations:
    for ins in comp.instructions:
      if ins.opcode == "copy":
        ins.opcode, n = "reshape", n + 1
      if args.strip_metadata:
        ins.ClearField("metadata")
  with open(pb, "wb") as f:
    f.write(module.SerializeToString())
  rows = params[0][1][0]
  samples = rows * (args.packing_factor if kind == "bert_packed" else 1.0)
  # The peer's name: steps that differ only in their kernels (a vendor module's) share one PyTorch peer.
  peer = f"{args.task}_{'packed_r' if kind == 'bert_packed' else 'b'}{rows}_{args.precision}"
  spec = {"module": os.path.basename(pb), "task": args.task, "rows": rows, "samples": samples,
          "precision": args.precision, "peer": peer, "params": params,
          "aliases": alias, "inputs": inputs, "loss_param": loss_param, "skipped_param": skipped_param}
  with open(args.prefix + ".step.json", "w") as f:
    json.dump(spec, f)
  if os.path.exists(args.prefix + ".hlo.txt"):
    os.remove(args.prefix + ".hlo.txt")
  print(f"{args.prefix}: {len(params)} parameters, {len(inputs)} batch inputs ({kind}, {rows} rows, {samples:g} "
        f"samples), {n} copies rewritten")
  return 0


if __name__ == "__main__":
  sys.exit(main())
