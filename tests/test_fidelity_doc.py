"""docs/fidelity.md cites the training rules by their real section titles: every (rules, "Title") on the page is a
section of training_rules.adoc at the 4.0 revision (its titles are stored in tests/data), and every *Rule:*
paragraph cites at least one."""
import re

from conftest import ROOT, TEST_DATA

DOC = (ROOT / "docs" / "fidelity.md").read_text()
CITATION = re.compile(r'\(rules,\s+"([^"]+)"')


def _titles():
  lines = (TEST_DATA / "training_rules_4.0_headings.txt").read_text().splitlines()
  return {line for line in lines if line and not line.startswith("#")}


def test_every_cited_section_title_exists_in_the_4_0_rules():
  titles = _titles()
  cited = [" ".join(c.split()) for c in CITATION.findall(DOC)]
  assert len(cited) >= 8
  assert [c for c in cited if c not in titles] == []


def test_every_rule_paragraph_cites_a_section():
  paragraphs = [p for p in re.split(r"\n\s*\n", DOC) if "*Rule:*" in p or "*Rules:*" in p]
  assert paragraphs
  assert [p[:80] for p in paragraphs if not CITATION.search(p)] == []
