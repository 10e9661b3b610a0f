"""Summary outputs of a scored set: summary.json / .md / .csv, gp2bm.xlsx ("MLPerf" sheet) and convergence plots.

All numbers come from one `summary` dict (built by cli.summarize) so the four formats cannot disagree.
"""
import csv
import os

import matplotlib

matplotlib.use("Agg")  # no display on benchmark nodes
import matplotlib.pyplot as plt  # noqa: E402
import openpyxl  # noqa: E402

from tf_gp2bm.files import atomic_output, write_json_atomic  # noqa: E402

from . import scoring  # noqa: E402

RUN_COLUMNS = ["task", "run", "seed", "status", "minutes", "time_to_train", "in_window", "dropped",
               "best_accuracy", "convergence_epoch", "exit_code", "compliance", "reason"]


def run_rows(summary):
  rows = []
  for task, t in summary["tasks"].items():
    window = range(*t["window"]) if t["window"] else range(0)
    for i, r in enumerate(t["runs"]):
      rows.append({
          "task": task, "run": i, "seed": r["seed"], "status": "converged" if r["converged"] else "not converged",
          "minutes": r["minutes"], "time_to_train": r["time_to_train"], "in_window": i in window,
          "dropped": i in t["dropped"], "best_accuracy": r["best_accuracy"],
          "convergence_epoch": r["convergence_epoch"], "exit_code": r.get("exit_code"),
          "compliance": r.get("compliance"), "reason": r["reason"]})
  return rows


def _fmt(v, digits=3):
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:,.{digits}f}"
  return str(v)


def write_csv(path, summary):
  with atomic_output(path) as tmp:
    with open(tmp, "w", newline="") as f:
      w = csv.DictWriter(f, fieldnames=RUN_COLUMNS)
      w.writeheader()
      w.writerows(run_rows(summary))


def write_markdown(path, summary):
  s = summary
  out = [f"# GP2BM benchmark summary: {s['set']['mode']} set {os.path.basename(s['set_dir'])}", "",
         f"- org / system: {s['set']['org']} / {s['set']['system_name']}; ruleset {s['ruleset']}",
         f"- **GP2BM score = 7.19/R + 9.05/B = {_fmt(s['score'], 4)}**",
         f"- with MLPerf RCP scaling (scaling.json) applied to R and B: "
         f"{_fmt(s.get('score_with_mlperf_rcp_scaling'), 4)}",
         f"- R (ResNet latency) = {_fmt(s['latency'].get('resnet'))} min; "
         f"B (BERT latency) = {_fmt(s['latency'].get('bert'))} min",
         f"- forced past failed preflight checks: {'YES (--force)' if s['forced'] else 'no'}",
         f"- page cache dropped before every run: {s['cache_clear_all']}", ""]
  for task, t in s["tasks"].items():
    out += [f"## {task}", "",
            f"- latency (olympic mean of runs {t['window'][0] if t['window'] else '-'}.."
            f"{t['window'][1] - 1 if t['window'] else '-'}, minutes): {_fmt(t['latency_min'])}",
            f"- valid: {t['valid']}" + (f"; {t['reason']}" if t["reason"] else ""),
            f"- target {scoring.TARGETS[task]} (re-derived from eval_accuracy); RCP: {t.get('rcp', '-')}"]
    if t.get("mlperf_scaling_factor"):
      out.append(f"- MLPerf RCP scaling factor (scaling.json): {t['mlperf_scaling_factor']:.4f} -> MLPerf "
                 f"normalized time {_fmt(t.get('mlperf_normalized_min'))} min")
    out += ["", "| run | seed | status | minutes | best acc | conv. epoch | exit | compliance | note |",
            "|---|---|---|---|---|---|---|---|---|"]
    for row in (r for r in run_rows(s) if r["task"] == task):
      note = ("dropped" if row["dropped"] else "") + ("" if row["in_window"] else " extra (not scored)")
      note += f" {row['reason']}" if row["reason"] else ""
      out.append(f"| {row['run']} | {row['seed']} | {row['status']} | {_fmt(row['minutes'])} | "
                 f"{_fmt(row['best_accuracy'], 4)} | {_fmt(row['convergence_epoch'])} | {_fmt(row['exit_code'])} | "
                 f"{row['compliance'] or '-'} | {note.strip()} |")
    out.append("")
  pc = s.get("package_checker")
  if pc:
    out += ["## mlperf-logging package checker (as reported)", "", f"{pc['summary']}", "",
            f"Full output: {pc['log']}", ""]
  out += ["## Preflight", "", "| check | status | detail |", "|---|---|---|"]
  out += [f"| {r['check']} | {r['status']} | {r['detail']} |" for r in s.get("preflight", [])]
  with atomic_output(path) as tmp:
    with open(tmp, "w") as f:
      f.write("\n".join(out) + "\n")


def write_xlsx(path, summary):
  wb = openpyxl.Workbook()
  ws = wb.active
  ws.title = "MLPerf"
  ws.append(["GP2BM", "mode", summary["set"]["mode"], "ruleset", summary["ruleset"]])
  ws.append(["score", summary["score"]])
  for task in ("resnet", "bert"):
    if task in summary["tasks"]:
      t = summary["tasks"][task]
      ws.append([f"{task} trimmed mean (min)", t["latency_min"], "valid", t["valid"], t["reason"]])
  ws.append([])
  ws.append(RUN_COLUMNS)
  for row in run_rows(summary):
    ws.append([row[c] for c in RUN_COLUMNS])
  info = wb.create_sheet("Preflight")
  info.append(["check", "status", "detail"])
  for r in summary.get("preflight", []):
    info.append([r["check"], r["status"], r["detail"]])
  with atomic_output(path) as tmp:
    wb.save(tmp)


def plot_task(path, task, runs):
  """Accuracy vs epochs (ResNet) or samples (BERT), every run of the task on one figure."""
  fig, ax = plt.subplots(figsize=(8, 5))
  for i, r in enumerate(runs):
    if r["evals"]:
      xs, ys = zip(*r["evals"])
      ax.plot(xs, ys, marker="o", label=f"run {i}" + ("" if r["converged"] else " (not converged)"))
  ax.axhline(scoring.TARGETS[task], color="k", linestyle="--", label=f"target {scoring.TARGETS[task]}")
  ax.set_xlabel("epochs" if task == "resnet" else "training samples")
  ax.set_ylabel("eval accuracy" if task == "resnet" else "masked-LM accuracy")
  ax.set_title(f"{task}: convergence of every run")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize="small")
  with atomic_output(path) as tmp:
    fig.savefig(tmp, format="png", dpi=100)
  plt.close(fig)


def write_all(set_dir, summary):
  """Writes every report into set_dir; returns their paths."""
  paths = {"json": os.path.join(set_dir, "summary.json"), "md": os.path.join(set_dir, "summary.md"),
           "csv": os.path.join(set_dir, "summary.csv"), "xlsx": os.path.join(set_dir, "gp2bm.xlsx")}
  write_json_atomic(paths["json"], summary)
  write_markdown(paths["md"], summary)
  write_csv(paths["csv"], summary)
  write_xlsx(paths["xlsx"], summary)
  for task, t in summary["tasks"].items():
    paths[f"plot_{task}"] = os.path.join(set_dir, f"convergence_{task}.png")
    plot_task(paths[f"plot_{task}"], task, t["runs"])
  return paths
