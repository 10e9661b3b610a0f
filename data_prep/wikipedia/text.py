"""Reference text clean-up of WikiExtractor output (cleanup_file.py + clean.sh), in Python.

cleanup_file.py drops each `<doc ...>` line (writing a blank line in its place) and the title line after it,
`</doc>` lines and empty lines. clean.sh then runs two `grep -v` filters and a chain of `sed s///g`; each sed
expression is re-stated below as a Python regex in the same order. All of them are negated-class or literal
patterns, for which sed's leftmost-longest and Python's backtracking pick the same match.
"""
import re

# grep -v '^<doc [^>]*>$' and grep -vE '\[\[Category:[^][]*\]\]': whole lines are dropped.
_DROP_LINE = (re.compile(r"^<doc [^>]*>$"), re.compile(r"\[\[Category:[^\]\[]*\]\]"))

_NOT_LINK = r"[^\]|\[]*"  # sed [^]|[]*
_NOT_BRACKET = r"[^\]\[]*"  # sed [^][]*
_SED = [
    (rf"\[\[({_NOT_LINK})\]\]", r"\1"),
    (rf"\[\[({_NOT_LINK})\]\]", r"\1"),
    (rf"\[\[{_NOT_LINK}\|({_NOT_LINK})\]\]", r"\1"),
    (rf"\[\[{_NOT_LINK}\|({_NOT_LINK})\]\]", r"\1"),
    (rf"\[\[:*[Ff]ile:{_NOT_BRACKET}\]\]", ""),
    (rf"\[\[[Mm]edia:{_NOT_BRACKET}\]\]", ""),
    (rf"\[\[[Ii]mage:{_NOT_BRACKET}\]\]", ""),
    (rf"\[({_NOT_LINK})\]", r"\1"),
    (rf"\[\[({_NOT_BRACKET})\]\]", ""),
    (r"alt=", ""),
    (r"</doc>", "\r"),
    (r"<chem([^<]*)</chem>", r"\1"),
    (r"<ins([^<]*)</ins>", r"\1"),
    (r"<, ref ([^<]*)</ref>", ""),  # clean.sh writes '<\, ref': GNU sed reads '\,' as a plain ','
    (r"<includeonly([^<]*)</includeonly>", ""),
    (r"<graph([^<]*)</graph>", ""),
    (r"<section([^\\]*)/>", ""),  # '[^\\]' inside bash double quotes reaches sed as '[^\]': not a backslash
    (r"<meta([^\\]*)/>", ""),
    (r"<hr([^\\]*)/>", ""),
    (r"<gallery([^>]*)>", ""),
    (r"<ref([^<]*)</ref>", ""),
    (r"<ref([^>]*)>", ""),
    (r"<http([^>]*)>", ""),
    (r"<Ref([^>]*)>", ""),
    (r"<mapframe ([^\\/]*)/>", ""),  # POSIX brackets keep the backslash of '[^\/]' literal
    (r"<mapframe([^>]*)>", ""),
]
_LITERAL_TAGS_1 = ["</mapframe>", "<poem>", "</poem>", "<math>", "</math>", "<ref>", "</ref>"]
_SED += [(re.escape(t), "") for t in _LITERAL_TAGS_1]
_SED += [(r"<div([^>]*)>", ""), (r"</div([^>]*)>", "")]
_LITERAL_TAGS_2 = [
    "</div style>", "</div>", "<sup>", "</sup>", "<br>", "</br>", "<BR>", "</BR>", "<Br>", "</Br>", "<del>",
    "</del>", "<nowiki>", "</nowiki>", "<NOWIKI>", "</NOWIKI>", "<onlyinclude>", "</onlyinclude>",
    "<includeonly>", "</includeonly>", "<small>", "</small>", "<chem>", "</chem>", "<noinclude>",
    "</noinclude>", "<gallery>", "</gallery>", "<graph>{", "<graph>", "}</graph>", "</graph>", "</references>"]
_SED += [(re.escape(t), "") for t in _LITERAL_TAGS_2]
_SED += [(r"<poem ([^>]*)>", "")]
_SED = [(re.compile(p), r) for p, r in _SED]


def strip_doc_markup(lines):
  """cleanup_file.py: lines (with their "\\n") of one WikiExtractor file -> lines without doc tags/titles."""
  skip_title = False
  for line in lines:
    if skip_title:
      skip_title = False
      continue
    if "<doc" in line:
      skip_title = True
      yield "\n"
      continue
    if "</doc>" in line or len(line) == 1:
      continue
    yield line


def sed_clean_line(line):
  """clean.sh on one line (without its "\\n"); None when grep drops the line."""
  if any(p.search(line) for p in _DROP_LINE):
    return None
  for pattern, replacement in _SED:
    if pattern.search(line) is not None:
      line = pattern.sub(replacement, line)
  return line


def clean_file(src, dst):
  """WikiExtractor file -> cleaned text file, as cleanup_file.py then clean.sh. Returns lines written.

  cleanup_file.py reads with Python's universal newlines ("\\r" also ends a line) and clean.sh works on
  "\\n"-separated lines; grep ends every line it prints with "\\n".
  """
  count = 0
  with open(src, "r", encoding="utf-8") as fin, open(dst, "w", encoding="utf-8", newline="\n") as fout:
    for line in strip_doc_markup(fin):
      cleaned = sed_clean_line(line[:-1] if line.endswith("\n") else line)
      if cleaned is not None:
        fout.write(cleaned + "\n")
        count += 1
  return count
