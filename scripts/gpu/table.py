"""One-screen table of measure.sh's figures: `python3 table.py DIR` reads DIR/figures.jsonl, writes DIR/table.txt."""
import json
import os
import sys


def main(folder):
  path = os.path.join(folder, "figures.jsonl")
  records = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
  rows = [("step", "batch", "ms", "samples/s", "loss first -> last", "finite", "note")]
  for r in records:
    loss = "" if "loss_first" not in r else f"{r['loss_first']:.4g} -> {r['loss_last']:.4g}" \
        if r["loss_last"] is not None else "no scalar loss"
    rows.append((r["step"], str(r.get("batch", "")), f"{r['median_ms']:.2f}", f"{r['samples_per_s']:,.0f}", loss,
                 "" if "finite" not in r else ("yes" if r["finite"] else "NO"), r.get("optimizer", r.get("versions", ""))))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  text = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows) + "\n"
  with open(os.path.join(folder, "table.txt"), "w") as f:
    f.write(text)
  print(text, end="")


if __name__ == "__main__":
  main(sys.argv[1])
