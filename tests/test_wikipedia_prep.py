"""Fidelity of the Wikipedia -> BERT pretraining data pipeline to the MLPerf reference.

The expected examples come from tests/reference_pretraining_data.py (a plain re-statement of the reference
create_pretraining_data.py + tokenization.py), never from data_prep itself. Inputs are the real WikiExtractor
sample and the real 30,522-entry uncased vocab from tests/data.
"""
import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_pretraining_data as reference  # noqa: E402
from conftest import BERT_VOCAB as VOCAB, WIKI_SAMPLE as SAMPLE  # noqa: E402

from data_prep import bert_records, native  # noqa: E402
from tf_gp2bm.formats import bert_pretraining  # noqa: E402
from data_prep.wikipedia.mt_stream import WordStream  # noqa: E402
from data_prep.wikipedia.instances import create_pretraining_examples  # noqa: E402
from data_prep.wikipedia.manifest import StageError, verify  # noqa: E402
from data_prep.wikipedia.tfrecords import pick_eval, run_tfrecords  # noqa: E402
from data_prep.wikipedia.text import clean_file, sed_clean_line, strip_doc_markup  # noqa: E402
from data_prep.wikipedia.wordpiece import WordpieceTokenizer  # noqa: E402



@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
  """The sample through the reference clean-up: one paragraph per line, a blank line before each article.
  (The tfrecords stage treats each line as a sentence; paragraphs exercise it just as well.)"""
  folder = tmp_path_factory.mktemp("cleaned")
  out = []
  for src in SAMPLE:
    clean_file(src, folder / src.name)
    out.append(folder / src.name)
  return out


@pytest.fixture(scope="module")
def reference_tokenizer():
  return reference.ReferenceTokenizer(str(VOCAB))


def _parse(path, max_seq_length, max_predictions_per_seq):
  import tensorflow as tf
  spec = bert_pretraining.feature_spec(max_seq_length, max_predictions_per_seq)
  return [{k: v.numpy().tolist() for k, v in tf.io.parse_single_example(r, spec).items()}
          for r in tf.data.TFRecordDataset(str(path))]


def _assert_same_examples(got, expected):
  assert len(got) == len(expected)
  for index, (g, e) in enumerate(zip(got, expected)):
    for name in bert_pretraining.FEATURES:
      assert g[name] == e[name], f"example {index}, feature {name}"


# ------------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_matches_reference_on_whole_sample(cleaned, reference_tokenizer):
  fast = WordpieceTokenizer.from_file(VOCAB)
  seen = set()
  for path in list(cleaned) + SAMPLE:  # cleaned text, then the raw WikiExtractor lines it changed or dropped
    with open(path, encoding="utf-8", newline="\n") as f:
      for line in f:
        if line in seen:
          continue
        seen.add(line)
        expected = reference_tokenizer.tokenize(line)
        assert fast.tokenize(line) == expected, line
        assert fast.tokenize_ids(line) == reference_tokenizer.ids(expected), line
  assert len(seen) > 8_000


@pytest.mark.parametrize("text", [
    "Crème brûlée, naïve CAFÉ — déjà vu!", "中文字符和English混合", "tab\tsep\u00a0nbsp\u2003em\u2028line",
    "zero\u200bwidth soft\u00adhyphen ctrl\x07bell nul\x00 repl\ufffd", "İstanbul ǅ ﬁ ß Ω Å",
    "a" * 201 + " " + "b" * 200, "x" * 30 + "!" + "unaffable", "[CLS] [SEP] [MASK] ##ing", "",
    "ℌ𝔢𝔩𝔩𝔬 😀 🇫🇷 \u0301\u0301 ٣٤ ๑๒",
])
def test_tokenizer_edge_cases(reference_tokenizer, text):
  fast = WordpieceTokenizer.from_file(VOCAB)
  assert fast.tokenize(text) == reference_tokenizer.tokenize(text)
  assert fast.tokenize_ids(text) == reference_tokenizer.ids(reference_tokenizer.tokenize(text))


# ------------------------------------------------------------------------------------------------ RNG replay
def test_word_stream_replays_random_exactly():
  for use_native in (True, False):
    rng, expected = random.Random(12345), random.Random(12345)
    stream = WordStream(rng, use_native=use_native)
    draw = random.Random(7)  # decides which call comes next
    for _ in range(3000):
      kind = draw.randrange(6)
      if kind == 0:
        assert stream.random() == expected.random()
      elif kind == 1:
        lo = draw.randrange(5)
        hi = lo + draw.choice([0, 1, 2, 7, 100, 30521, 2 ** 31, 2 ** 32 - 2])
        assert stream.randint(lo, hi) == expected.randint(lo, hi)
      elif kind == 2:
        items = list(range(draw.choice([0, 1, 2, 3, 509, 1000])))
        got = stream.shuffled(items)
        expected.shuffle(items)
        assert got == items
      elif kind == 3:
        count, vocab = draw.randrange(80), draw.choice([5, 30522])
        want = []
        for _ in range(count):
          if expected.random() < 0.8:
            want.append(-1)
          elif expected.random() < 0.5:
            want.append(-2)
          else:
            want.append(expected.randint(0, vocab - 1))
        assert stream.mask_choices(count, vocab) == want
      else:
        len_a, len_b, limit = draw.randrange(1, 600), draw.randrange(1, 600), draw.randrange(2, 510)
        if len_a + len_b > limit + 1:
          a, b = list(range(len_a)), list(range(len_b))
          reference.truncate_pair(a, b, limit, expected)
          a_lo, a_hi, b_lo, b_hi = stream.truncate(len_a, len_b, limit)
          assert (list(range(a_lo, a_hi)), list(range(b_lo, b_hi))) == (a, b)
    assert stream.random() == expected.random()


def test_native_kernel_builds():
  assert native.load() is not None, "cc could not build data_prep/_native.c (the fallback is much slower)"


# ------------------------------------------------------------------------------------------------ examples
def test_tfrecords_stage_identical_to_reference(cleaned, tmp_path):
  """The official settings (512/76, seed 12345) on one real file with dupe_factor 2, through the stage."""
  settings = dict(max_seq_length=512, max_predictions_per_seq=76, masked_lm_prob=0.15, short_seq_prob=0.1,
                  dupe_factor=2, random_seed=12345, do_lower_case=True)
  manifest = run_tfrecords([str(cleaned[0])], str(VOCAB), str(tmp_path), settings, workers=1)
  expected = reference.reference_features([str(cleaned[0])], str(VOCAB), max_seq_length=512,
                                          max_predictions_per_seq=76, dupe_factor=2)
  got = _parse(tmp_path / cleaned[0].name, 512, 76)
  _assert_same_examples(got, expected)
  assert manifest["files"][cleaned[0].name]["count"] == len(expected) > 1000
  assert sum(e["next_sentence_labels"][0] for e in expected) > 0  # both NSP branches were exercised


def test_api_identical_to_reference_small_settings(cleaned):
  """Several files in one pool, short sequences, high short_seq_prob, another seed, and the Python fallback."""
  kwargs = dict(max_seq_length=64, max_predictions_per_seq=10, masked_lm_prob=0.2, short_seq_prob=0.5,
                dupe_factor=1)
  files = [str(p) for p in cleaned[1:3]]
  expected = reference.reference_features(files, str(VOCAB), seed=7, **kwargs)
  instances = create_pretraining_examples(files, str(VOCAB), random_seed=7, **kwargs)
  import tensorflow as tf
  spec = bert_pretraining.feature_spec(64, 10)
  got = [{k: v.numpy().tolist() for k, v in tf.io.parse_single_example(
      bert_records.serialize_instance(x, 64, 10), spec).items()} for x in instances]
  _assert_same_examples(got, expected)


def test_python_fallback_identical(cleaned, tmp_path, monkeypatch):
  head = tmp_path / "head.txt"
  with open(cleaned[3], encoding="utf-8") as f:
    head.write_text("".join(f.readlines()[:400]), encoding="utf-8")
  monkeypatch.setattr(native, "_lib", False)  # as if no C compiler were available
  monkeypatch.setattr(bert_records, "_ENCODERS", {})
  kwargs = dict(max_seq_length=128, max_predictions_per_seq=20, dupe_factor=2)
  instances = create_pretraining_examples(str(head), str(VOCAB), **kwargs)
  n = bert_records.write_examples(str(tmp_path / "out"), instances, 128, 20)  # TensorFlow writer fallback
  monkeypatch.undo()
  expected = reference.reference_features([str(head)], str(VOCAB), **kwargs)
  assert n == len(expected)
  _assert_same_examples(_parse(tmp_path / "out", 128, 20), expected)


# ------------------------------------------------------------------------------------------------ records
def test_serialization_is_deterministic_protobuf(tmp_path):
  import tensorflow as tf
  example = {"input_ids": [101, 7592, 103, 102, 2088, 30521, 102], "segment_ids": [0, 0, 0, 0, 1, 1, 1],
             "masked_lm_positions": [2, 5], "masked_lm_ids": [2088, 999], "next_sentence_labels": 1}
  got = bert_records.serialize_instance(example, 10, 4)
  padded = {
      "input_ids": example["input_ids"] + [0] * 3, "input_mask": [1] * 7 + [0] * 3,
      "segment_ids": example["segment_ids"] + [0] * 3, "masked_lm_positions": [2, 5, 0, 0],
      "masked_lm_ids": [2088, 999, 0, 0], "next_sentence_labels": [1]}
  feature = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=v)) for k, v in padded.items()}
  feature["masked_lm_weights"] = tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 1.0, 0.0, 0.0]))
  proto = tf.train.Example(features=tf.train.Features(feature=feature))
  assert got == proto.SerializeToString(deterministic=True)
  assert bert_records.write_examples(str(tmp_path / "r"), [example] * 3, 10, 4) == 3
  parsed = _parse(tmp_path / "r", 10, 4)
  assert parsed[2]["masked_lm_weights"] == [1.0, 1.0, 0.0, 0.0] and parsed[0]["input_mask"] == padded["input_mask"]
  assert list(bert_records.read_records(str(tmp_path / "r"))) == [got] * 3
  with pytest.raises(ValueError, match="does not fit"):
    bert_records.serialize_instance(example, 6, 4)


def test_truncated_record_file_is_reported(tmp_path):
  path = tmp_path / "r"
  bert_records.write_records(str(path), [b"x" * 100, b"y" * 50])
  data = path.read_bytes()
  path.write_bytes(data[:-10])
  with pytest.raises(ValueError, match="truncated record at byte 116"):
    list(bert_records.read_records(str(path)))
  path.write_bytes(data[:20] + b"z" + data[21:])
  with pytest.raises(ValueError, match="bad data checksum"):
    list(bert_records.read_records(str(path)))


def test_pick_eval_takes_evenly_spaced_records(tmp_path):
  src = tmp_path / "intermediate"
  bert_records.write_records(str(src), [str(i).encode() for i in range(25)])
  stats, total = pick_eval(str(src), str(tmp_path / "picked"), num_examples=10)
  picked = [int(r) for r in bert_records.read_records(str(tmp_path / "picked"))]
  assert total == 25 and stats["count"] == 10
  assert picked == [int(i * (25 / 10)) for i in range(10)] == [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]


# ------------------------------------------------------------------------------------------------ stage
def _small_settings():
  return dict(max_seq_length=128, max_predictions_per_seq=20, masked_lm_prob=0.15, short_seq_prob=0.1,
              dupe_factor=1, random_seed=12345, do_lower_case=True)


def test_stage_resumes_and_redoes_what_changed(tmp_path):
  parts = []
  for i in range(2):
    part = tmp_path / "text" / f"part-{i:05d}-of-00002"
    part.parent.mkdir(exist_ok=True)
    part.write_text("The first sentence here.\nA second one follows.\nAnd a third.\n\n"
                    f"Another article {i}.\nIt has two sentences.\n", encoding="utf-8")
    parts.append(str(part))
  out = tmp_path / "out"
  first = run_tfrecords(parts, str(VOCAB), str(out), _small_settings(), workers=2)
  marker = out / ".done" / "part-00001-of-00002.json"
  stamp = marker.stat().st_mtime_ns
  again = run_tfrecords(parts, str(VOCAB), str(out), _small_settings(), workers=2)
  assert again["files"] == first["files"] and marker.stat().st_mtime_ns == stamp  # nothing redone
  Path(parts[1]).write_text("Changed text.\nStill two lines.\n", encoding="utf-8")
  changed = run_tfrecords(parts, str(VOCAB), str(out), _small_settings(), workers=1)
  assert changed["files"]["part-00001-of-00002"]["sha256"] != first["files"]["part-00001-of-00002"]["sha256"]
  assert changed["files"]["part-00000-of-00002"] == first["files"]["part-00000-of-00002"]
  assert verify(str(out)) == []
  with open(out / "part-00000-of-00002", "r+b") as f:  # same size, one byte changed
    f.seek(30)
    byte = f.read(1)
    f.seek(30)
    f.write(bytes([byte[0] ^ 1]))
  assert verify(str(out)) == [f"{out}/part-00000-of-00002: sha256 differs from the manifest"]
  (out / "part-00000-of-00002").write_bytes(b"half")  # a truncated output is never trusted
  stale = out / "part-00000-of-00002.tmp.999999999"  # left by a killed writer (no such pid)
  stale.write_bytes(b"partial")
  run_tfrecords(parts, str(VOCAB), str(out), _small_settings(), workers=1)
  assert verify(str(out)) == [] and not stale.exists()


def test_wrong_inputs_stop_with_a_clear_message(tmp_path):
  part = tmp_path / "part"
  part.write_text("Some text.\n", encoding="utf-8")
  small_vocab = tmp_path / "vocab.txt"
  small_vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "some", "text", "."]) + "\n")
  official = dict(_small_settings(), max_seq_length=512, max_predictions_per_seq=76, dupe_factor=10)
  with pytest.raises(StageError, match=r"has 8 entries; the MLPerf settings need the 30,522-entry"):
    run_tfrecords([str(part)], str(small_vocab), str(tmp_path / "o"), official)
  # a small vocab is fine with other settings (the BERT smoke demo does this)
  manifest = run_tfrecords([str(part)], str(small_vocab), str(tmp_path / "o"), _small_settings())
  assert manifest["total"]["files"] == 1
  from data_prep.wikipedia.tfrecords import check_complete_parts
  names = [str(tmp_path / f"part-{i:05d}-of-00500") for i in range(500) if i not in (7, 499)]
  with pytest.raises(StageError, match=r"2 of 500 parts missing in .*: part-00007-of-00500, part-00499-of-00500"):
    check_complete_parts(names)
  with pytest.raises(StageError, match=r"input .*missing-part does not exist"):
    run_tfrecords([str(tmp_path / "missing-part")], str(VOCAB), str(tmp_path / "o"), _small_settings())
  with pytest.raises(StageError, match="lacks \\[MASK\\]"):
    bad = tmp_path / "bad_vocab.txt"
    bad.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    run_tfrecords([str(part)], str(bad), str(tmp_path / "o"), _small_settings())


# ------------------------------------------------------------------------------------------------ clean-up
def test_doc_markup_and_sed_clean_up():
  lines = ['<doc id="1" url="u" title="T">\n', "T\n", "\n", "Body [[Link|shown]] and [[plain]].\n",
           "[[Category:Things]]\n", "x<ref name=a>cite</ref>y<br>z alt=w\n", "</doc>\n"]
  stripped = list(strip_doc_markup(lines))
  assert stripped == ["\n", "Body [[Link|shown]] and [[plain]].\n", "[[Category:Things]]\n",
                      "x<ref name=a>cite</ref>y<br>z alt=w\n"]
  assert [sed_clean_line(s[:-1]) for s in stripped] == ["", "Body shown and plain.", None, "xyz w"]
  # expected values produced by running the reference clean.sh (GNU sed/grep) on these lines
  assert sed_clean_line("[[File:a.jpg|thumb]] keep <math>x</math>") == "thumb keep x"
  assert sed_clean_line("[[File:a.jpg]] <section begin=x/>s") == "File:a.jpg s"
  assert (sed_clean_line("a [[Image:b c]] [x] [[Media:q]] <, ref zz</ref> <mapframe a=1/> <poem class=x>p</poem>")
          == "a Image:b c x Media:q   p")


# ------------------------------------------------------------------------------------------------ split
def _reference_split(segmented, raw_sizes, work, num_test, block_mb):
  """seperate_test_set.py + do_gather.py, restated literally: .4 files on disk, list membership, io.open."""
  import io
  eval_articles = []
  for file_id, path in enumerate(segmented):
    num_tests = int((file_id + 1) * num_test * 1.0 / len(segmented)) - int(file_id * num_test * 1.0 / len(segmented))
    rng = random.Random(12345 + file_id * 13)
    with io.open(path, "r", encoding="utf-8", newline="\n") as fin:
      articles = fin.read().split("\n\n")
    ids = []
    while len(ids) < num_tests:
      new_id = int(rng.random() * len(articles))
      if new_id in ids:
        continue
      ids.append(new_id)
    with io.open(work / f"{file_id}.4", "w", encoding="utf-8", newline="\n") as fout:
      for i in range(len(articles)):
        if i in ids:
          eval_articles.append(articles[i])
        else:
          fout.write(articles[i])
          fout.write("\n\n")
  parts, count, out, total = {}, 0, None, 0
  for file_id, size in enumerate(raw_sizes):
    if block_mb * 1024 * 1024 < total + size:
      count += 1
      total = 0
      out = None
    if out is None:
      out = f"part-{count:05d}-of-00500"
      parts[out] = ""
    total += size
    content = io.open(work / f"{file_id}.4", "r", encoding="utf-8-sig").read()
    if content[-1] == content[-2] and content[-1] == "\n":
      content = content[:-1]
    parts[out] += content
  return parts, eval_articles


def test_split_identical_to_reference(cleaned, tmp_path):
  from data_prep.wikipedia.split import run_split
  import hashlib
  raw_sizes = [p.stat().st_size for p in SAMPLE]
  segmented = [str(p) for p in cleaned]  # any blank-line separated article text works for the split
  manifest = run_split(segmented, raw_sizes, str(tmp_path / "out"), workers=2, num_test_articles=21,
                       block_mb=2.5)
  (tmp_path / "ref").mkdir()
  parts, held = _reference_split(segmented, raw_sizes, tmp_path / "ref", 21, 2.5)
  assert sorted(parts) == ["part-00000-of-00500", "part-00001-of-00500"]
  for name, text in parts.items():
    assert (tmp_path / "out" / name).read_text(encoding="utf-8") == text
  assert (tmp_path / "out" / "eval.txt").read_text(encoding="utf-8") == "".join(a + "\n\n" for a in held)
  md5s = "".join(hashlib.md5(a.rstrip().encode()).hexdigest() + "\n" for a in held)
  assert (tmp_path / "out" / "eval.md5").read_text() == md5s
  assert manifest["files"]["eval.txt"]["count"] == 21 and len(manifest["files"]) == 4
  from data_prep.wikipedia.accept import check_eval_articles
  assert check_eval_articles(str(tmp_path / "out" / "eval.txt"), str(tmp_path / "out" / "eval.md5")) == 21
  again = run_split(segmented, raw_sizes, str(tmp_path / "out"), workers=1, num_test_articles=21, block_mb=2.5)
  assert again["files"] == manifest["files"]


# ------------------------------------------------------------------------------------------------ inputs
def test_published_text_checks_report_what_is_wrong(tmp_path):
  from data_prep.wikipedia.accept import accept_text, check_eval_articles
  for i in range(498):
    (tmp_path / f"part-{i:05d}-of-00500").write_text("x\n")
  with pytest.raises(StageError, match=r"3 published text file\(s\) missing: part-00498-of-00500, "
                                       r"part-00499-of-00500, eval.txt"):
    accept_text(str(tmp_path))
  (tmp_path / "eval.txt").write_text("A one.\nA two.\n\nB one.\n\n")
  (tmp_path / "eval.md5").write_text("d41d8cd98f00b204e9800998ecf8427e\n")
  with pytest.raises(StageError, match="has 2 articles, .* lists 1"):
    check_eval_articles(str(tmp_path / "eval.txt"), str(tmp_path / "eval.md5"))
  for i in (498, 499):
    (tmp_path / f"part-{i:05d}-of-00500").write_text("x\n")
  with pytest.raises(StageError, match="eval.md5: 33 bytes, the published file has 330,000"):
    accept_text(str(tmp_path))
  (tmp_path / "eval.md5").unlink()
  with pytest.raises(StageError, match="eval.txt: 23 bytes, the published file has 32,851,144"):
    accept_text(str(tmp_path))


def test_dump_checks(tmp_path):
  import bz2
  from data_prep.wikipedia.extract import check_dump
  good = tmp_path / "small.xml.bz2"
  good.write_bytes(bz2.compress(b"<mediawiki></mediawiki>" * 100))
  assert check_dump(str(good)) is False  # not the official name: only the bz2 end marker is checked
  truncated = tmp_path / "cut.xml.bz2"
  truncated.write_bytes(good.read_bytes()[:-7])
  with pytest.raises(StageError, match="does not end with a bz2 end-of-stream marker"):
    check_dump(str(truncated))
  official = tmp_path / "enwiki-20200101-pages-articles-multistream.xml.bz2"
  official.write_bytes(good.read_bytes())
  with pytest.raises(StageError, match=r"is \d+ bytes, the published dump has 17,751,214,669 \(truncated"):
    check_dump(str(official))
  with pytest.raises(StageError, match="does not exist"):
    check_dump(str(tmp_path / "missing.bz2"))


def test_segment_without_punkt_model_explains_how_to_provide_it(tmp_path, monkeypatch):
  pytest.importorskip("nltk")
  from data_prep.wikipedia.textstages import load_punkt, segment_file
  monkeypatch.setenv("NLTK_DATA", str(tmp_path))
  import nltk
  monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
  with pytest.raises(StageError, match="python -m nltk.downloader -d /path/to/nltk_data punkt_tab"):
    load_punkt(str(tmp_path))
  # the file layout logic with NLTK's Punkt algorithm and default (untrained) parameters
  from nltk.tokenize.punkt import PunktSentenceTokenizer
  src = tmp_path / "cleaned"
  src.write_text("\nFirst one. Second one.\nThird.\n\nOther article.\n", encoding="utf-8")
  assert segment_file(str(src), str(tmp_path / "seg"), PunktSentenceTokenizer()) == 4
  assert (tmp_path / "seg").read_text() == "\nFirst one.\nSecond one.\nThird.\n\nOther article.\n\n"


def test_clean_stage_keeps_layout_and_resumes(tmp_path):
  from data_prep.wikipedia.textstages import run_text_stage
  raw = tmp_path / "raw" / "AA"
  raw.mkdir(parents=True)
  for src in SAMPLE[:2]:
    (raw / src.name).write_bytes(src.read_bytes())
  manifest = run_text_stage("clean", str(tmp_path / "raw"), str(tmp_path / "clean"), workers=2)
  assert sorted(manifest["files"]) == ["AA/wiki_00", "AA/wiki_01"]
  reference_like = tmp_path / "one"
  clean_file(SAMPLE[0], reference_like)
  assert (tmp_path / "clean" / "AA" / "wiki_00").read_bytes() == reference_like.read_bytes()
  assert run_text_stage("clean", str(tmp_path / "raw"), str(tmp_path / "clean"))["files"] == manifest["files"]


def test_eval_stage_picks_from_the_intermediate(cleaned, tmp_path):
  from data_prep.wikipedia.eval_set import run_eval
  text = tmp_path / "text"
  text.mkdir()
  (text / "eval.txt").write_bytes(cleaned[1].read_bytes())
  settings = _small_settings()
  manifest = run_eval(str(text), str(VOCAB), str(tmp_path / "out"), settings, num_examples=100)
  intermediate = list(bert_records.read_records(str(tmp_path / "out" / "eval_intermediate")))
  picked = list(bert_records.read_records(str(tmp_path / "out" / "eval_10k")))
  n = len(intermediate)
  assert manifest["files"]["eval_intermediate"]["count"] == n > 100 and not manifest["published_input"]
  assert picked == [intermediate[int(i * (n / 100))] for i in range(100)]
  assert verify(str(tmp_path / "out")) == []
  described = bert_pretraining.read_manifest(str(tmp_path / "out"))  # eval_10k only, not the intermediate
  assert [os.path.basename(p) for p in described.split("eval").paths] == ["eval_10k"]
  assert described.split("eval").records == 100 and "train" not in described.splits


def test_trainer_manifest_through_the_cli(cleaned, tmp_path):
  """tfrecords + eval into one folder: manifest.json lists both splits with the counts, sizes and token-id range
  read back from the records; verify rewrites it and refuses a smaller vocab naming the file."""
  from data_prep.wikipedia.cli import main
  text = tmp_path / "text"
  text.mkdir()
  (text / "part-00000-of-00002").write_bytes(cleaned[0].read_bytes())
  (text / "part-00001-of-00002").write_bytes(cleaned[2].read_bytes())
  (text / "eval.txt").write_bytes(cleaned[1].read_bytes())
  out = tmp_path / "records"
  small = ["--max_seq_length=128", "--max_predictions_per_seq=20", "--dupe_factor=1", "--workers=2"]
  assert main(["tfrecords", f"--input={text}", f"--vocab={VOCAB}", f"--out={out}", *small]) == 0
  assert main(["eval", f"--input={text}", f"--vocab={VOCAB}", f"--out={out}", "--num_examples=50", *small]) == 0
  described = bert_pretraining.read_manifest(str(out))
  train = described.split("train")
  assert [os.path.basename(p) for p in train.paths] == ["part-00000-of-00002", "part-00001-of-00002"]
  assert train.records == sum(len(list(bert_records.read_records(p))) for p in train.paths) > 100
  assert described.split("eval").records == 50 and described.vocab_size == 30522
  assert 1000 < train.max_token_id < 30522 and described.max_seq_length == 128
  described.check_model(128, 20, 30522)
  one = bert_pretraining.read_manifest(str(out / "part-00001-of-00002")).split("train")  # a file or a glob: a subset
  assert one.records == len(list(bert_records.read_records(train.paths[1]))) < train.records
  assert bert_pretraining.read_manifest(str(out / "part-*")).split("train").records == train.records
  before = (out / "manifest.json").read_text()
  (out / "manifest.json").unlink()
  assert main(["verify", f"--out={out}", f"--vocab={VOCAB}"]) == 0  # splits and sizes from the stage manifests
  assert (out / "manifest.json").read_text() == before
  small_vocab = tmp_path / "vocab1000.txt"
  small_vocab.write_text("\n".join(VOCAB.read_text().splitlines()[:1000]) + "\n")
  assert main(["verify", f"--out={out}", f"--vocab={small_vocab}"]) == 2
  assert (out / "manifest.json").read_text() == before  # a failed check leaves the good manifest alone


_TINY_DUMP = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <generator>MediaWiki 1.35.0-wmf.11</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
    </namespaces>
  </siteinfo>
  <page>
    <title>Anarchism</title>
    <ns>0</ns>
    <id>12</id>
    <revision>
      <id>1</id>
      <text xml:space="preserve">'\'\'Anarchism'\'\' is a [[political philosophy]] that rejects [[hierarchy|hierarchies]]. It is old.

== History ==
Some history here. More text follows.</text>
    </revision>
  </page>
</mediawiki>
"""  # WikiExtractor parses the dump line by line: one tag per line, as in the real dump


def test_extract_stage_runs_the_pinned_wikiextractor(tmp_path):
  pytest.importorskip("wikiextractor")
  import bz2
  from data_prep.wikipedia.extract import run_extract
  from data_prep.wikipedia.textstages import run_text_stage
  dump = tmp_path / "tiny.xml.bz2"
  dump.write_bytes(bz2.compress(_TINY_DUMP.encode()))
  manifest = run_extract(str(dump), str(tmp_path / "text"), workers=1)
  assert list(manifest["files"]) == ["AA/wiki_00"]
  extracted = (tmp_path / "text" / "AA" / "wiki_00").read_text()
  assert extracted.startswith('<doc id="12" url="https://en.wikipedia.org/wiki?curid=12" title="Anarchism">\n')
  assert "rejects hierarchies. It is old." in extracted
  assert run_extract(str(dump), str(tmp_path / "text"))["files"] == manifest["files"]  # resumed, not redone
  run_text_stage("clean", str(tmp_path / "text"), str(tmp_path / "clean"), workers=1)
  cleaned = (tmp_path / "clean" / "AA" / "wiki_00").read_text()
  assert cleaned.startswith("\nAnarchism is a political philosophy") and "<doc" not in cleaned


# ------------------------------------------------------------------------------------------- official settings
# The reference's create_pretraining_data.py invocation (retired_benchmarks/bert/README.md of mlcommons/training,
# "Generate the TFRecords for Wiki dataset": the same flags for every part-00XXX-of-00500 and for eval.txt), and
# that script's defaults for the fields the invocation leaves out.
REFERENCE_INVOCATION = """
   --do_lower_case=True
   --max_seq_length=512
   --max_predictions_per_seq=76
   --masked_lm_prob=0.15
   --random_seed=12345
   --dupe_factor=10
"""
REFERENCE_DEFAULTS = {"short_seq_prob": 0.1}  # flags.DEFINE_float("short_seq_prob", 0.1, ...)
REFERENCE_EVAL_PICK = "--num_examples_to_pick=10000"  # pick_eval_samples.py, after the eval.txt invocation


def _reference_settings():
  settings = dict(REFERENCE_DEFAULTS)
  for line in REFERENCE_INVOCATION.split():
    name, value = line[2:].split("=")
    settings[name] = value == "True" if value in ("True", "False") else float(value) if "." in value else int(value)
  return settings


def test_official_settings_are_the_reference_invocation_field_by_field():
  from data_prep.wikipedia import published
  from data_prep.wikipedia.cli import _settings, build_parser
  want = _reference_settings()
  assert set(published.OFFICIAL_SETTINGS) == set(want)
  for name, value in want.items():
    got = published.OFFICIAL_SETTINGS[name]
    assert got == value and type(got) is type(value), f"{name}: {got!r}, the reference uses {value!r}"
  # What the tools run when no flag is given: the tfrecords and eval stages and the whole pipeline.
  for argv in (["tfrecords", "--input=x", "--vocab=v", "--out=o"], ["eval", "--input=x", "--vocab=v", "--out=o"],
               ["all", "--work=w", "--vocab=v"]):
    assert _settings(build_parser().parse_args(argv)) == want, argv[0]
  picked = int(REFERENCE_EVAL_PICK.split("=")[1])
  assert published.NUM_EVAL_EXAMPLES == picked
  assert build_parser().parse_args(["eval", "--input=x", "--vocab=v", "--out=o"]).num_examples == picked
