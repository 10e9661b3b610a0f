"""What MLCommons publishes for the BERT Wikipedia data (retired_benchmarks/bert/README.md and dataset.md of
mlcommons/training), used to check inputs and outputs when they are the published ones."""

DUMP_NAME = "enwiki-20200101-pages-articles-multistream.xml.bz2"
DUMP_BYTES = 17_751_214_669
DUMP_MD5 = "00d47075e0f583fb7c0791fac1c57cb3"

VOCAB_ENTRIES = 30_522
VOCAB_MD5 = "64800d5d8528ce344256daf115d4965e"

NUM_PARTS = 500
NUM_EVAL_ARTICLES = 10_000
NUM_EVAL_EXAMPLES = 10_000


def part_name(index, num_parts=NUM_PARTS):
  return f"part-{index:05d}-of-{num_parts:05d}"


# The text parts of ./results: (bytes, md5). The README lists only these six parts plus the eval files.
TEXT = {
    "eval.md5": (330_000, "71a58382a68947e93e88aa0d42431b6c"),
    "eval.txt": (32_851_144, "2a220f790517261547b1b45ed3ada07a"),
    "part-00000-of-00500": (27_150_902, "a64a7c31eff5cd38ae6d94f7a6229dab"),
    "part-00001-of-00500": (27_198_569, "549a9ed4f805257245bec936563abfd0"),
    "part-00002-of-00500": (27_395_616, "1a1366ddfc03aef9d41ce552ee247abf"),
    "part-00497-of-00500": (24_775_043, "66835aa75d4855f2e678e8f3d73812e9"),
    "part-00498-of-00500": (24_575_505, "e6d68a7632e9f4aa1a94128cce556dc9"),
    "part-00499-of-00500": (21_873_644, "b3b087ad24e3770d879a351664cebc5a"),
}

# TFRecord sizes in bytes ("Some stats of the generated tfrecords"). No checksums are published for them; a
# record's size does not depend on the order protobuf writes the feature map in, so sizes compare across writers.
TFRECORD_BYTES = {
    "eval_intermediate": 843_343_183,
    "eval_10k": 25_382_591,
    "part-00000-of-00500": 514_241_279,
    "part-00499-of-00500": 898_392_312,
}

# The reference create_pretraining_data.py invocation for every part and for eval.txt (README).
OFFICIAL_SETTINGS = {
    "max_seq_length": 512, "max_predictions_per_seq": 76, "masked_lm_prob": 0.15, "short_seq_prob": 0.1,
    "dupe_factor": 10, "random_seed": 12345, "do_lower_case": True,
}
