r"""Projects time-to-train and the GP2BM score from measured step rates (prints figures).

    python -m tf_gp2bm.projection --gpus=8 --resnet_rate=6900 --bert_rate=370 \
        [--resnet_gbs=3264 --bert_gbs=448 --eval_speedup=3 --startup_s=30]

Rates are per GPU (samples/s of the train step, e.g. from tf_gp2bm.bench or gpu_step_bench). Convergence comes
from the pinned ruleset's reference convergence points (RCPs) at the chosen global batch: the RCP mean, rounded up
to where the run can actually stop (the ResNet eval grid: epoch 2, 6, 10, ...; BERT's eval interval in samples).
"""
import argparse
import math

from tf_gp2bm.driver.checks import rcp_lookup
from tf_gp2bm.driver.scoring import gp2bm_score
from tf_gp2bm.mlperf_log import RULESET
from tf_gp2bm.tasks.bert.task import eval_every_steps

IMAGENET_TRAIN, IMAGENET_VAL, BERT_EVAL = 1_281_167, 50_000, 10_000


def project_resnet(gpus, rate, gbs, eval_speedup, startup_s, offset=2, period=4, ruleset=RULESET):
  rcp = rcp_lookup("resnet", gbs, ruleset)
  mean = rcp.mean if rcp.mean is not None else 35.0
  epochs = offset + math.ceil(max(mean - offset, 0) / period) * period
  evals = (epochs - offset) // period + 1
  train_s = epochs * (IMAGENET_TRAIN // gbs) * gbs / (rate * gpus)
  eval_s = evals * IMAGENET_VAL / (rate * eval_speedup * gpus)
  return {"task": "resnet", "rcp": rcp.line(), "converge_at": f"{epochs} epochs ({evals} evals)",
          "train_min": train_s / 60, "eval_min": eval_s / 60, "minutes": (train_s + eval_s + startup_s) / 60}


def project_bert(gpus, rate, gbs, eval_speedup, startup_s, ruleset=RULESET):
  rcp = rcp_lookup("bert", gbs, ruleset)
  mean = rcp.mean if rcp.mean is not None else 2_500_000
  interval = eval_every_steps(gbs) * gbs  # the rules' cadence, rounded up to whole steps
  evals = math.ceil(mean / interval)
  samples = evals * interval
  train_s = samples / (rate * gpus)
  eval_s = evals * BERT_EVAL / (rate * eval_speedup * gpus)
  return {"task": "bert", "rcp": rcp.line(), "converge_at": f"{samples:,} samples ({evals} evals)",
          "train_min": train_s / 60, "eval_min": eval_s / 60, "minutes": (train_s + eval_s + startup_s) / 60}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--gpus", type=int, default=8)
  p.add_argument("--resnet_rate", type=float, required=True, help="ResNet train images/s per GPU")
  p.add_argument("--bert_rate", type=float, required=True, help="BERT train sequences/s per GPU")
  p.add_argument("--resnet_gbs", type=int, default=3264)
  p.add_argument("--bert_gbs", type=int, default=448)
  p.add_argument("--eval_speedup", type=float, default=3.0, help="eval samples/s over train samples/s")
  p.add_argument("--startup_s", type=float, default=30.0, help="run_start to first step and other fixed cost")
  p.add_argument("--ruleset", default=RULESET)
  a = p.parse_args(argv)
  rows = [project_resnet(a.gpus, a.resnet_rate, a.resnet_gbs, a.eval_speedup, a.startup_s, ruleset=a.ruleset),
          project_bert(a.gpus, a.bert_rate, a.bert_gbs, a.eval_speedup, a.startup_s, ruleset=a.ruleset)]
  print(f"{'task':7} {'converges at':30} {'train min':>10} {'eval min':>9} {'total min':>10}")
  for r in rows:
    print(f"{r['task']:7} {r['converge_at']:30} {r['train_min']:10.2f} {r['eval_min']:9.2f} {r['minutes']:10.2f}")
  for r in rows:
    print(f"  {r['rcp']}")
  score = gp2bm_score(rows[0]["minutes"], rows[1]["minutes"])
  print(f"projected score 7.19/R + 9.05/B = 7.19/{rows[0]['minutes']:.2f} + 9.05/{rows[1]['minutes']:.2f} "
        f"= {score:.3f}  ({a.gpus} GPUs)")
  return rows, score


if __name__ == "__main__":
  main()
