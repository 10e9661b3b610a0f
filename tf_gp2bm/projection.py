r"""Projects time-to-train and the GP2BM score from measured training rates (prints figures; a projection, not a
measurement).

    python -m tf_gp2bm.projection --gpus=8 --resnet_rate=6900 --bert_rate=370 [--resnet_gbs=3264 --bert_gbs=448]

Rates are per GPU (training samples/s, e.g. from tf_gp2bm.bench or scripts/gpu/step_timer.py). Convergence comes
from the pinned ruleset's reference convergence points (RCPs) at the chosen global batch: the RCP mean, rounded up to where
a run can actually stop (the task's eval schedule). The global batch defaults to the --system flagfile's.
Where that flagfile trains packed rows (BERT `--packed`), the rate given is taken as rows/s (a step on unpacked
rows costs what it costs on packed ones) and training runs at rate x packing factor samples/s: the factor is
--bert_packing_factor, else the pack manifest's in --bert_packed_data_dir, else 2.0, and is printed. Evals stay
unpacked.
"""
import argparse
import os

from tf_gp2bm.files import flags_dir
from tf_gp2bm.tasks import spec as task_spec



def project(spec, gpus, rate, gbs, eval_speedup, startup_s, ruleset=task_spec.RULESET, progress=None,
            packing_factor=1.0):
  """Minutes for one run of spec's task: train to the first eval at or after the RCP mean (or `progress`, in the
  spec's progress unit), plus the evals. `packing_factor`: samples per row when the run trains packed rows at
  `rate` rows/s."""
  from tf_gp2bm.driver.checks import rcp_lookup  # the RCP tables load slowly: not for --help
  rcp = rcp_lookup(spec.name, gbs, ruleset)
  if progress is None and rcp.mean is None:
    raise SystemExit(f"{spec.name}: {rcp.line()}; no convergence point to project from (give --{spec.name}_progress)")
  stop = spec.stop_point(gbs, rcp.mean if progress is None else progress)
  train_s = stop.samples / (rate * packing_factor * gpus)
  eval_s = stop.evals * spec.eval_examples / (rate * eval_speedup * gpus)
  progress = f"{int(stop.progress):,}" if float(stop.progress).is_integer() else f"{stop.progress:,.2f}"
  where = f"{progress} {spec.progress_unit} ({stop.evals} evals)"
  return {"task": spec.name, "rcp": rcp.line(), "converge_at": where, "train_min": train_s / 60,
          "eval_min": eval_s / 60, "minutes": (train_s + eval_s + startup_s) / 60}


def flagfile_trains_packed(path):
  """Whether an absl flagfile sets --packed (a line of its own, as the flagfiles write booleans)."""
  with open(path) as f:
    return any(line.strip() in ("--packed", "--packed=true", "--packed=True") for line in f)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--gpus", type=int, default=8, help="GPUs per run (default 8)")
  p.add_argument("--system", default="8xgpu", help="flagfile set the global batch defaults come from "
                 "(flags/<task>/<system>.flags; default 8xgpu)")
  specs = task_spec.specs()
  for s in specs:
    p.add_argument(f"--{s.name}_rate", type=float, required=True, help=f"{s.title}: training {s.sample_unit}/s "
                   "per GPU (required)")
    p.add_argument(f"--{s.name}_gbs", type=int, default=None, help=f"{s.name} global batch size (default: the "
                   "--system flagfile's)")
    p.add_argument(f"--{s.name}_progress", type=float, default=None, help=f"{s.name}: {s.progress_unit} to "
                   "converge (default: the RCP mean of the global batch)")
  for s in specs:
    if s.packing_factor:
      p.add_argument(f"--{s.name}_packing_factor", type=float, default=None, help=f"{s.name}: samples per packed "
                     f"row, where the --system flagfile trains packed (default: the pack manifest's in "
                     f"--{s.name}_packed_data_dir, else {s.packing_factor(None)[0]:g})")
      p.add_argument(f"--{s.name}_packed_data_dir", default=None, help=f"{s.name}: packed data whose "
                     "manifest-pack.json gives the packing factor")
  p.add_argument("--eval_speedup", type=float, default=3.0, help="eval samples/s over train samples/s (default 3)")
  p.add_argument("--startup_s", type=float, default=30.0, help="seconds from run_start to the first step and other "
                 "fixed cost (default 30)")
  p.add_argument("--ruleset", default=task_spec.RULESET, help=f"default {task_spec.RULESET}")
  a = p.parse_args(argv)
  from tf_gp2bm.driver.checks import flagfile_global_batch_size
  rows = []
  for s in specs:
    gbs = getattr(a, f"{s.name}_gbs")
    if gbs is None:
      flagfile = os.path.join(flags_dir(), s.name, f"{a.system}.flags")
      gbs = flagfile_global_batch_size(flagfile) if os.path.exists(flagfile) else None
      if gbs is None:
        p.error(f"--{s.name}_gbs: not given and {flagfile} sets no --global_batch_size")
    flagfile = os.path.join(flags_dir(), s.name, f"{a.system}.flags")
    factor = 1.0
    if s.packing_factor and os.path.exists(flagfile) and flagfile_trains_packed(flagfile):
      factor, source = getattr(a, f"{s.name}_packing_factor"), f"--{s.name}_packing_factor"
      if factor is None:
        factor, source = s.packing_factor(getattr(a, f"{s.name}_packed_data_dir"))
      if not 1 <= factor <= 3:
        p.error(f"--{s.name}_packing_factor={factor:g}: expected samples per packed row in [1, 3]")
      print(f"{s.name}: {flagfile} trains packed rows: {getattr(a, f'{s.name}_rate'):g} rows/s per GPU x packing "
            f"factor {factor:.3f} ({source})")
    rows.append(project(s, a.gpus, getattr(a, f"{s.name}_rate"), gbs, a.eval_speedup, a.startup_s, a.ruleset,
                        getattr(a, f"{s.name}_progress"), packing_factor=factor))
  print(f"{'task':7} {'converges at':32} {'train min':>10} {'eval min':>9} {'total min':>10}")
  for r in rows:
    print(f"{r['task']:7} {r['converge_at']:32} {r['train_min']:10.2f} {r['eval_min']:9.2f} {r['minutes']:10.2f}")
  for r in rows:
    print(f"  {r['rcp']}")
  score = task_spec.gp2bm_score({r["task"]: r["minutes"] for r in rows})
  minutes = {r["task"]: r["minutes"] for r in rows}
  terms = " + ".join(f"{t.weight:g}/{minutes[t.task]:.2f}" for t in task_spec.GP2BM_SCORE)
  print(f"projected score {task_spec.score_formula()} = {terms} = {score:.3f}  ({a.gpus} GPUs; a projection)")
  return rows, score


if __name__ == "__main__":
  main()
