"""The reports of a scored set: summary.json / .md / .csv, gp2bm.xlsx and one convergence plot per task.

All of them are written from one `summary` dict (driver.summary.build), so they cannot disagree, and all start
with the verdict, then the system, then the score and how it was computed, then the runs.
"""
import csv
import json
import os

import matplotlib

matplotlib.use("Agg")  # no display on benchmark nodes
import matplotlib.pyplot as plt  # noqa: E402
import openpyxl  # noqa: E402
from openpyxl.styles import Font  # noqa: E402
from openpyxl.utils import get_column_letter  # noqa: E402

from tf_gp2bm.files import atomic_output  # noqa: E402

from .scoring import CONVERGED  # noqa: E402
from .summary import DEMO  # noqa: E402

RUN_COLUMNS = ["task", "run", "seed", "status", "time_to_train_min", "logged_min", "in_window", "dropped",
               "converged_at", "progress_unit", "samples_trained", "throughput", "best_accuracy", "exit_code",
               "compliance", "cache_clear", "attempts", "note"]
NOT_CONVERGED_CELL = "DNF"  # a non-converged run's time in the sheet: COUNT() skips it, the formulas drop it


def run_note(r):
  parts = []
  if r["dropped"]:
    parts.append("dropped (fastest/slowest)")
  if not r["in_window"]:
    parts.append("extra run, not scored")
  if r.get("recovered"):
    parts.append("recorded on resume from its files")
  if r.get("log_changed"):
    parts.append("LOG CHANGED after the run")
  if r.get("data_service"):
    parts.append(f"train input from the tf.data service at {r['data_service']}")
  if r["reason"]:
    parts.append(r["reason"])
  return "; ".join(parts)


def run_rows(summary):
  rows = []
  for task, t in summary["tasks"].items():
    for r in t["runs"]:
      rows.append({
          "task": task, "run": r["run"], "seed": r["seed"], "status": r["status"],
          "time_to_train_min": r["time_to_train_min"], "logged_min": r["logged_min"], "in_window": r["in_window"],
          "dropped": r["dropped"], "converged_at": r["converged_at"], "progress_unit": t["progress_unit"],
          "samples_trained": r["samples_trained"], "throughput": r["throughput"],
          "best_accuracy": r["best_accuracy"], "exit_code": r["exit_code"], "compliance": r["compliance"],
          "cache_clear": r["cache_clear"], "attempts": " ".join(a["folder"] for a in r["attempts"]),
          "note": run_note(r)})
  return rows


def _fmt(v, digits=3):
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:,.{digits}f}"
  if isinstance(v, int) and not isinstance(v, bool):
    return f"{v:,}"
  return str(v)


def header_pairs(summary):
  """(label, value) lines every format starts with: verdict, reasons, system, score."""
  v, score = summary["verdict"], summary["score"]
  pairs = [("verdict", v["kind"]), ("verdict detail", v["headline"])]
  pairs += [("reason", r) for r in v["reasons"]]
  pairs += [("note", n) for n in v.get("notes", [])]
  pairs += [(f"system: {k}", val) for k, val in summary["system"].items()]
  pairs += [("score formula", score["formula"]), ("score", score["value"]), ("score computation", score["computation"])]
  if score.get("why_none"):
    pairs.append(("no score because", score["why_none"]))
  if score.get("with_mlperf_rcp_scaling") is not None:
    pairs.append(("score with MLPerf RCP scaling", score["with_mlperf_rcp_scaling"]))
  return pairs


def write_csv(path, summary):
  with atomic_output(path) as tmp:
    with open(tmp, "w", newline="") as f:
      w = csv.writer(f)
      for label, value in header_pairs(summary):
        w.writerow([label, value])
      w.writerow([])
      w.writerow(RUN_COLUMNS)
      for row in run_rows(summary):
        w.writerow([row[c] for c in RUN_COLUMNS])


def write_markdown(path, summary):
  s, v, score = summary, summary["verdict"], summary["score"]
  out = [f"# {title(s)}", "", f"**{v['headline']}**", ""]
  if v["reasons"] and v["kind"] == DEMO:
    out += ["What would keep a real set from being submittable (for information):", ""]
  out += [f"- {r}" for r in v["reasons"]] + ([""] if v["reasons"] else [])
  out += [f"- note: {n}" for n in v.get("notes", [])] + ([""] if v.get("notes") else [])
  out += ["## System", "", "| field | value |", "|---|---|"]
  out += [f"| {k} | {val} |" for k, val in s["system"].items()]
  if "set" in s:
    out += ["", f"Mode {s['set']['mode']}, ruleset {s['ruleset']}, flagfiles `{s['set']['system']}`, "
            f"{s['set']['np']} process(es) per run" + (f", vendor kernels `{s['set']['kernels']}`"
                                                         if s["set"].get("kernels") else "") + ".", ""]
    if s["set"].get("data_service"):
      ds = s["set"]["data_service"]
      used = sorted({t for t, block in s["tasks"].items() for r in block["runs"] if r.get("data_service")})
      out += [f"tf.data service started by the driver: dispatcher on {ds['hosts'].split(',')[0]}:{ds['port']}, "
              f"{ds['workers_per_host']} worker(s) on each of {ds['hosts']}; train input of the "
              f"{', '.join(used) or 'no'} runs (see the run notes).", ""]
  else:  # a vendor's results scored by `score`
    out += ["", f"Scored from {', '.join(f'`{p}`' for p in s['sources'])}, ruleset {s['ruleset']}.", ""]
  out += ["## Score", "", f"GP2BM score = {score['formula']} = **{_fmt(score['value'], 4)}**", "",
          f"- computed: {score['computation']}"]
  out += [f"- {sym} = {what}" for sym, what in score["symbols"].items()]
  out.append("- olympic mean: of the scored consecutive runs, the fastest and the slowest are dropped and the rest "
             "averaged; a run that did not converge counts as the slowest (two make the task invalid)")
  if score.get("why_none"):
    out.append(f"- no score: {score['why_none']}")
  if score.get("with_mlperf_rcp_scaling") is not None:
    scaled = _fmt(score["with_mlperf_rcp_scaling"], 4)
    out.append(f"- with the MLPerf RCP scaling the package checker applied: {scaled}")
  out.append("")
  for task, t in s["tasks"].items():
    window = f"runs {t['window'][0]}..{t['window'][1] - 1}" if t["window"] else "no scored window"
    out += [f"## {t['title']} ({task})", "",
            f"- olympic mean time to train ({window}): **{_fmt(t['latency_min'])} min**"
            + ("" if t["valid"] else " (INVALID)") + (f"; {t['reason']}" if t["reason"] else ""),
            f"- target {t['accuracy_label']} {t['target']} (checked from the logged eval_accuracy); RCP: {t['rcp']}"]
    if t["spread"]:
      sp = t["spread"]
      out.append(f"- spread of the averaged runs: {_fmt(sp['min'])}..{_fmt(sp['max'])} min ({sp['range_pct']:.1f} %), "
                 f"stdev {_fmt(sp['stdev'])} min")
    if t.get("mlperf_rcp_scaling"):
      sc = t["mlperf_rcp_scaling"]
      out.append(f"- MLPerf RCP scaling applied by the package checker: x{sc['factor']:.4f} -> "
                 f"{_fmt(sc['normalized_min'])} min")
    out += ["", f"| run | seed | status | time to train (min) | converged at ({t['progress_unit']}) | "
            f"{t['sample_unit']}/s | exit | compliance | note |", "|---|---|---|---|---|---|---|---|---|"]
    for row in (r for r in run_rows(s) if r["task"] == task):
      note = row["note"] + (f"; earlier attempts: {row['attempts']}" if row["attempts"] else "")
      out.append(f"| {row['run']} | {row['seed']} | {row['status']} | {_fmt(row['time_to_train_min'])} | "
                 f"{_fmt(row['converged_at'])} | {_fmt(row['throughput'], 1)} | {_fmt(row['exit_code'])} | "
                 f"{row['compliance'] or '-'} | {note} |")
    out.append("")
  pc = s["package_checker"]
  out += ["## mlperf-logging package checker (as reported)", "", pc["summary"], ""]
  out += [f"Full output: {pc['log']}", ""] if pc.get("log") else []
  out += ["## Preflight", "", "| check | status | detail |", "|---|---|---|"]
  out += [f"| {r['check']} | {r['status']} | {r['detail']} |" for r in s.get("preflight", [])]
  with atomic_output(path) as tmp:
    with open(tmp, "w") as f:
      f.write("\n".join(out) + "\n")


def _olympic_formula(col, first, last):
  """Excel olympic mean of rows first..last of col: a non-converged run (text, skipped by COUNT) is the dropped
  slowest; two or more make it INVALID."""
  n, rng = last - first + 1, f"{col}{first}:{col}{last}"
  if n < 3:
    return '"INVALID"'
  return (f'=IF(COUNT({rng})={n},(SUM({rng})-MIN({rng})-MAX({rng}))/{n - 2},'
          f'IF(COUNT({rng})={n - 1},(SUM({rng})-MIN({rng}))/{n - 2},"INVALID"))')


def title(summary):
  return summary.get("title") or f"GP2BM benchmark set {summary['set_folder']}"


def write_xlsx(path, summary):
  wb = openpyxl.Workbook()
  ws = wb.active
  ws.title = "MLPerf"
  fill_sheet(ws, summary)
  info = wb.create_sheet("Preflight")
  info.append(["check", "status", "detail"])
  for r in summary.get("preflight", []):
    info.append([r["check"], r["status"], r["detail"]])
  with atomic_output(path) as tmp:
    wb.save(tmp)


def fill_sheet(ws, summary):
  """The MLPerf tab: header, score with live formulas over the run rows, the runs. Returns the score cell."""
  bold = Font(bold=True)
  ws.append([title(summary)])
  ws["A1"].font = Font(bold=True, size=14)
  for label, value in header_pairs(summary):
    if not label.startswith("score"):
      ws.append([label, value])
  ws.append([])
  ws.append(["score", "symbol", "weight", "olympic mean (min)", "valid", "note"])
  for c in ws[ws.max_row]:
    c.font = bold
  task_rows = {}
  for task, t in summary["tasks"].items():
    ws.append([task, t["symbol"], t["weight"], None, t["valid"], t["reason"]])
    task_rows[task] = ws.max_row
  score_row = ws.max_row + 1
  ws.append(["GP2BM score", summary["score"]["formula"]])
  ws.cell(score_row, 1).font = bold
  ws.append(["computed in Python", summary["score"]["computation"]])
  ws.append([])
  ws.append(RUN_COLUMNS)
  for c in ws[ws.max_row]:
    c.font = bold
  time_col = get_column_letter(RUN_COLUMNS.index("time_to_train_min") + 1)
  first_row = {}
  for row in run_rows(summary):
    values = [row[c] for c in RUN_COLUMNS]
    if row["time_to_train_min"] is None:
      values[RUN_COLUMNS.index("time_to_train_min")] = NOT_CONVERGED_CELL
    ws.append(values)
    first_row.setdefault(row["task"], ws.max_row - row["run"])
  terms = []
  for task, t in summary["tasks"].items():
    r = task_rows[task]
    cell = ws.cell(r, 4)
    if t["window"]:
      a, b = t["window"]
      cell.value = _olympic_formula(time_col, first_row[task] + a, first_row[task] + b - 1)
    else:
      cell.value = "INVALID"
    cell.number_format = "0.000"
    terms.append(f"C{r}/D{r}")
  if len(terms) == len(summary["score"]["symbols"]):
    ws.cell(score_row, 3).value = f'=IFERROR({"+".join(terms)},"INVALID")'
  else:
    ws.cell(score_row, 3).value = "INVALID"
  ws.cell(score_row, 3).number_format = "0.0000"
  ws.cell(score_row, 3).font = bold
  for name in ("time_to_train_min", "logged_min", "throughput"):
    col = get_column_letter(RUN_COLUMNS.index(name) + 1)
    for cells in ws[f"{col}{min(first_row.values(), default=1)}:{col}{ws.max_row}"]:
      cells[0].number_format = "0.000" if name != "throughput" else "#,##0.0"
  for i, width in enumerate([22, 40, 12, 16, 12, 12, 10, 9, 13, 9, 14, 11, 12, 9, 40, 11, 30, 50], 1):
    ws.column_dimensions[get_column_letter(i)].width = width
  return ws.cell(score_row, 3)


def plot_task(path, task, t, system_title):
  """Accuracy vs the task's progress unit for every run: dropped runs dashed, the target a line."""
  fig, ax = plt.subplots(figsize=(8, 5))
  for r in t["runs"]:
    if r["evals"]:
      xs, ys = zip(*r["evals"])
      label = f"run {r['run']}" + ("" if r["status"] == CONVERGED else " (not converged)")
      label += " (dropped)" if r["dropped"] else ""
      ax.plot(xs, ys, marker="o", linestyle="--" if r["dropped"] else "-", alpha=0.5 if r["dropped"] else 1.0,
              label=label)
  ax.axhline(t["target"], color="k", linestyle=":", label=f"target {t['target']}")
  ax.set_xlabel("epochs" if t["progress_unit"] == "epochs" else f"training {t['sample_unit']}")
  ax.set_ylabel(t["accuracy_label"])
  ax.set_title(f"{t['title']}: every run\n{system_title}", fontsize="medium")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize="small")
  with atomic_output(path) as tmp:
    fig.savefig(tmp, format="png", dpi=100)
  plt.close(fig)


def write_all(set_dir, summary):
  """Writes every report into set_dir; returns their paths."""
  paths = {"json": os.path.join(set_dir, "summary.json"), "md": os.path.join(set_dir, "summary.md"),
           "csv": os.path.join(set_dir, "summary.csv"), "xlsx": os.path.join(set_dir, "gp2bm.xlsx")}
  with atomic_output(paths["json"]) as tmp:  # key order kept: the verdict comes first
    with open(tmp, "w") as f:
      json.dump(summary, f, indent=2)
      f.write("\n")
  write_markdown(paths["md"], summary)
  write_csv(paths["csv"], summary)
  write_xlsx(paths["xlsx"], summary)
  system = summary["system"]
  system_title = " / ".join(str(system[k]) for k in ("system_name", "accelerator_model_name", "framework")
                            if system.get(k) and system[k] != "N/A")
  for task, t in summary["tasks"].items():
    paths[f"plot_{task}"] = os.path.join(set_dir, f"convergence_{task}.png")
    plot_task(paths[f"plot_{task}"], task, t, system_title)
  return paths
