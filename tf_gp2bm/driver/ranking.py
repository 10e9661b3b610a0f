"""The ranking of scored systems (`run_benchmark.sh score`): the terminal table, ranking.md / .csv, and
ranking.xlsx with a Ranking sheet whose scores link to one MLPerf sheet per system (reports.fill_sheet).
"""
import csv
import os
import re

import openpyxl

from tf_gp2bm.tasks import spec as task_spec

from . import reports

VALID, INVALID = "VALID", "INVALID"
RANK_COLUMNS = ["rank", "system", "verdict", "score"] + [t.symbol + " (min)" for t in task_spec.GP2BM_SCORE] + [
    "accelerators", "ruleset", "reports", "why"]


def rows_of(results):
  """One row per system: valid systems by score (best first), then the others by name."""
  order = sorted(results, key=lambda s: (s["verdict"]["kind"] != VALID, -(s["score"]["value"] or 0), s["name"]))
  rows, rank = [], 0
  for s in order:
    valid = s["verdict"]["kind"] == VALID
    rank += valid
    sysd = s["system"]
    accel = " x ".join(str(sysd[k]) for k in ("accelerators_per_node", "accelerator_model_name") if sysd.get(k))
    rows.append(dict(zip(RANK_COLUMNS, [rank if valid else "-", s["name"], s["verdict"]["kind"], s["score"]["value"]]
                         + [s["score"]["latency_min"].get(t.task) for t in task_spec.GP2BM_SCORE]
                         + [accel, s["ruleset"], s["report_folder"], "; ".join(s["verdict"]["reasons"])[:300]])))
  return rows


def cell(v, digits=3):
  return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def text(rows):
  """The terminal table (the verdict lines above it say why; the files add the report folders)."""
  columns = [c for c in RANK_COLUMNS if c not in ("reports", "why")]
  cells = [[cell(r[c], 4 if c == "score" else 3) for c in columns] for r in rows]
  widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(columns)]
  lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
  lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in cells]
  return "\n".join(lines)


def write(out_dir, results):
  """ranking.md / .csv / .xlsx (with each system's MLPerf tab)."""
  rows = rows_of(results)
  paths = {k: os.path.join(out_dir, f"ranking.{k}") for k in ("md", "csv", "xlsx")}
  md = [f"# GP2BM ranking ({task_spec.score_formula()})", "",
        "| " + " | ".join(RANK_COLUMNS) + " |", "|" + "---|" * len(RANK_COLUMNS)]
  md += ["| " + " | ".join(cell(r[c], 4 if c == "score" else 3).replace("|", "/") for c in RANK_COLUMNS) + " |"
         for r in rows]
  md += ["", "Each system's reports (verdict, system, score, runs, plots) are in its folder (column reports).", ""]
  with open(paths["md"], "w") as f:
    f.write("\n".join(md))
  with open(paths["csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(RANK_COLUMNS)
    w.writerows([[r[c] for c in RANK_COLUMNS] for r in rows])
  wb = openpyxl.Workbook()
  ws = wb.active
  ws.title = "Ranking"
  ws.append(RANK_COLUMNS)
  by_name = {s["name"]: s for s in results}
  used = {"Ranking"}
  for r in rows:
    sheet = _sheet_name(r["system"], used)
    score_cell = reports.fill_sheet(wb.create_sheet(sheet), by_name[r["system"]])
    values = [r[c] for c in RANK_COLUMNS]
    values[RANK_COLUMNS.index("score")] = f"='{sheet}'!{score_cell.coordinate}"  # the system tab's formula
    ws.append(values)
    ws.cell(ws.max_row, RANK_COLUMNS.index("score") + 1).number_format = "0.0000"
  wb.save(paths["xlsx"])
  return paths, rows


def unique_name(name, used, numbered):
  """`name`, or the first `numbered(n)` for n = 2, 3, ... that is not in `used`; the answer is added to `used`."""
  out, n = name, 1
  while out in used:
    n += 1
    out = numbered(n)
  used.add(out)
  return out


def _sheet_name(name, used):
  base = re.sub(r"[\[\]:*?/\\']", "_", name)[:31]  # Excel's limit and forbidden characters
  return unique_name(base, used, lambda n: f"{base[:28]}~{n}")
