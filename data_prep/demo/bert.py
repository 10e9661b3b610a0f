r"""A small BERT pretraining data set, vocab and TF1-style starting checkpoint for the BERT smoke config.

    python -m data_prep.demo.bert --out=/tmp/demo_bert

Text: documents of sentences; every document has a topic word and each word of it is the topic with probability
1 - NOISE, else a random word. A masked token is predictable from its segment's other tokens (the topic) unless
it was a noise word, so a small BERT learns masked-LM accuracy past the 0.720 target but stays well below 1.0
(the checker rejects accuracy >= 1.0). The text goes through the same pretraining-instance code, record writer
and manifest as the real Wikipedia data (reference masking, NSP pairs, padding). The starting checkpoint is a
tiny model given a short phase-1 by the BERT task's own loss and LAMB, saved by tf.compat.v1.train.Saver with
the reference TF1 variable names (plus adam_m/adam_v slots and global_step), so the run exercises the conversion.
Prints the flags to pass to `python -m tf_gp2bm.train --task=bert --flagfile=flags/bert/smoke.flags`.
"""
import argparse
import json
import os
import random

import numpy as np

from data_prep import bert_manifest, bert_records
from data_prep.wikipedia.instances import create_pretraining_examples
from tf_gp2bm.formats import bert_pretraining

NOISE = 0.10
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_SEQ_LENGTH, MAX_PREDICTIONS = 64, 10
TRAIN_FILES = 4
PRETRAIN_STEPS = 150  # the starting checkpoint's own short phase-1 (a few CPU seconds)
TOOL = {"name": "data_prep.demo.bert", "version": 2}


def _words(count):
  consonants, vowels = "bdfgklmnprstvz", "aeiou"
  words = []
  for c1 in consonants:
    for v in vowels:
      for c2 in consonants:
        words.append(c1 + v + c2)
  random.Random(7).shuffle(words)
  return sorted(words[:count])


def _document(rng, words):
  topic = rng.choice(words)
  sentences = []
  for _ in range(rng.randint(6, 12)):
    n = rng.randint(6, 12)
    sentences.append(" ".join(topic if rng.random() >= NOISE else rng.choice(words) for _ in range(n)) + " .")
  return sentences


def write_text(path, rng, words, num_docs):
  with open(path, "w") as f:
    for _ in range(num_docs):
      f.write("\n".join(_document(rng, words)) + "\n\n")


def pretrain(train_dir, steps, seed, batch_size=32, learning_rate=0.03):
  """A short phase-1 through the BERT task itself (its model, loss, gradient clipping and LAMB), so the starting
  checkpoint is partly trained (like the reference phase-1 checkpoint at ~0.34 MLM accuracy) and each smoke run
  only has to finish the job. Returns (model, MLM accuracy on the last batch)."""
  import tensorflow as tf  # TensorFlow and the task here, not at the top: --help answers without them
  from tf_gp2bm.runtime.single_device import SingleDevice
  from tf_gp2bm.tasks.bert import pretraining_input
  from tf_gp2bm.tasks.bert.config import Config
  from tf_gp2bm.tasks.bert.task import BertTask
  config = Config.defaults(global_batch_size=batch_size, base_learning_rate=learning_rate, weight_decay=0.01,
                           bert_config="tiny", max_seq_length=MAX_SEQ_LENGTH, max_predictions_per_seq=MAX_PREDICTIONS,
                           train_steps=steps * 2, warmup_steps=0, data_dir=train_dir, closed=False)
  task = BertTask(SingleDevice(), config)
  model = task.build_model()
  opt = task.build_optimizer(model)
  files = bert_pretraining.read_manifest(train_dir).split("train").paths
  spec = bert_pretraining.feature_spec(MAX_SEQ_LENGTH, MAX_PREDICTIONS)
  # In file order with a seeded shuffle (not the trainer's parallel interleave): the checkpoint is reproducible.
  ds = tf.data.TFRecordDataset(files).shuffle(1000, seed=seed).repeat().batch(batch_size, drop_remainder=True)
  ds = ds.map(lambda r: pretraining_input._to_model_inputs(tf.io.parse_example(r, spec)))

  @tf.function
  def step(batch):
    with tf.GradientTape() as tape:
      loss = task.loss(model, batch)
    opt.apply(task.process_micro_gradients(tape.gradient(loss, model.trainable_variables)))

  batch = None
  for batch in ds.take(steps):
    step(batch)
  if batch is None:
    return model, None
  correct, count = task.eval_counts(model, batch)
  return model, float(correct) / max(float(count), 1e-9)


def write_checkpoint(out, seed, pretrain_steps):
  """Tiny model -> TF1 names (with optimizer slots and global_step, as a reference checkpoint has)."""
  import tf_keras
  from tf_gp2bm.tasks.bert import checkpoint, model as bert_model
  tf_keras.utils.set_random_seed(seed)
  if pretrain_steps:
    m, accuracy = pretrain(os.path.join(out, "train"), pretrain_steps, seed)
  else:
    m, accuracy = bert_model.build_bert(bert_model.TINY), None
  tensors = checkpoint.reference_tensors(m)
  for name, value in list(tensors.items()):
    tensors[name + "/adam_m"] = np.zeros_like(value)
    tensors[name + "/adam_v"] = np.zeros_like(value)
  tensors["global_step"] = np.int64(pretrain_steps)
  return checkpoint.write_tf1_checkpoint(os.path.join(out, "ckpt", f"model.ckpt-{pretrain_steps}"), tensors), accuracy


def generate(out, train_docs=600, eval_docs=60, dupe_factor=5, seed=12345, pretrain_steps=PRETRAIN_STEPS):
  from tf_gp2bm.tasks.bert.model import TINY  # loads TensorFlow
  os.makedirs(os.path.join(out, "text"), exist_ok=True)
  words = _words(TINY.vocab_size - len(SPECIALS) - 1)  # + "."
  vocab = list(SPECIALS) + ["."] + words
  assert len(vocab) == TINY.vocab_size
  vocab_file = os.path.join(out, "vocab.txt")
  with open(vocab_file, "w") as f:
    f.write("\n".join(vocab) + "\n")
  with open(os.path.join(out, "bert_config.json"), "w") as f:
    json.dump(TINY.to_json(), f, indent=2)
  rng = random.Random(seed)
  kw = dict(max_seq_length=MAX_SEQ_LENGTH, max_predictions_per_seq=MAX_PREDICTIONS)
  counts = {}
  for split, docs, dupe, shards in (("train", train_docs, dupe_factor, TRAIN_FILES), ("eval", eval_docs, 1, 1)):
    text = os.path.join(out, "text", f"{split}.txt")
    write_text(text, rng, words, docs)
    instances = create_pretraining_examples(text, vocab_file, dupe_factor=dupe, random_seed=seed, **kw)
    counts[split] = len(instances)
    names = [f"part-{i:05d}-of-{shards:05d}" if split == "train" else "eval_records" for i in range(shards)]
    for i, name in enumerate(names):
      bert_records.write_examples(os.path.join(out, split, name), instances[i::shards], **kw)
    bert_manifest.write_manifest(os.path.join(out, split), split, names, vocab_size=len(vocab), tool=TOOL, **kw)
  prefix, counts["start_accuracy"] = write_checkpoint(out, seed, pretrain_steps)
  flags = [f"--data_dir={out}/train", f"--eval_dir={out}/eval", f"--init_checkpoint={prefix}", "--bert_config=tiny"]
  return counts, flags


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--seed", type=int, default=12345)
  parser.add_argument("--pretrain_steps", type=int, default=PRETRAIN_STEPS)
  args = parser.parse_args()
  counts, flags = generate(args.out, seed=args.seed, pretrain_steps=args.pretrain_steps)
  print(f"wrote {counts['train']} train and {counts['eval']} eval examples, vocab, bert_config.json and a TF1 "
        f"checkpoint under {args.out} (its MLM train accuracy after its short phase-1: "
        f"{counts['start_accuracy']:.3f})")
  print("flags: " + " ".join(flags))


if __name__ == "__main__":
  main()
