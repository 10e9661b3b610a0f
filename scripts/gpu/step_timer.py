"""Times train steps exported from TensorFlow (tf_gp2bm.bench --export_hlo, then prepare_step.py) through JAX's XLA,
on the GPU machine (JAX and PyTorch, no TensorFlow). Uses only public JAX APIs: jax.extend.mlir.hlo_to_stablehlo,
jax.extend.backend, jaxlib.xla_client.DeviceList.

    python3 step_timer.py --versions                        # jax/jaxlib and the device; exit 3 if unusable
    python3 step_timer.py STEP.step.json --out=DIR          # one module: a line, and DIR/STEP.json
    python3 step_timer.py --table DIR [--order order.txt]  # one screen of every figure in DIR, peers beside ours

Each step is fed real-shaped synthetic inputs (the recipe prepare_step.py wrote: valid token ids, masks of ones,
labels in range); the variables it updates feed the next step, as in a training loop. The loss is read from the
trainer's loss_sum variable (fed as 0, so its new value is the step's loss); a non-finite loss or a skipped update is
exit 1 with the figure marked failed. Figures: compile seconds, median and min ms over --steps, samples/s.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np

DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64", "s8": "int8", "s16": "int16",
          "s32": "int32", "s64": "int64", "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
          "pred": "bool"}


def load_jax():
  """jax and the public entry points the timer needs; exit 3 with one clear line when this JAX lacks them."""
  try:
    import jax
    import jaxlib
    from jax.extend import backend, mlir
    from jaxlib import xla_client
  except ImportError as e:
    sys.exit(print(f"step_timer: needs JAX: {e}", file=sys.stderr) or 3)
  missing = [n for n, ok in (("jax.extend.mlir.hlo_to_stablehlo", hasattr(mlir, "hlo_to_stablehlo")),
                             ("jax.extend.backend.get_compile_options", hasattr(backend, "get_compile_options")),
                             ("jaxlib.xla_client.DeviceList", hasattr(xla_client, "DeviceList")))
             if not ok]
  jax.config.update("jax_enable_x64", True)  # the steps hold int64 counters (the optimizer's iterations)
  client = backend.get_backend()
  if not hasattr(client, "compile_and_load"):
    missing.append("Client.compile_and_load")
  if missing:
    print(f"step_timer: jax {jax.__version__} / jaxlib {jaxlib.__version__} lacks {', '.join(missing)} "
          "(written against jax 0.10.2)", file=sys.stderr)
    sys.exit(3)
  return jax, jaxlib, backend, mlir, xla_client, client


def make_input(rng, recipe, dtype, shape):
  fill, np_dtype = recipe["fill"], _np_dtype(dtype)
  if fill == "ones":
    return np.ones(shape, np_dtype)
  if fill == "zeros":
    return np.zeros(shape, np_dtype)
  if fill == "arange":
    return np.broadcast_to(np.arange(shape[-1]), shape).astype(np_dtype)
  return rng.integers(0, recipe["high"], size=shape).astype(np_dtype)


def make_state(rng, dtype, shape):
  """Variables: small random weights (what they hold does not change the step's time)."""
  np_dtype = _np_dtype(dtype)
  if np.issubdtype(np_dtype, np.integer) or np_dtype == np.bool_:
    return np.zeros(shape, np_dtype)
  return (rng.standard_normal(shape) * 0.02).astype(np_dtype)


def _np_dtype(name):
  import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy; a dependency of jax)
  return np.dtype(DTYPES[name])


def time_step(spec_path, steps, out_dir):
  jax, _, backend, mlir, xla_client, client = load_jax()
  with open(spec_path) as f:
    spec = json.load(f)
  name = os.path.basename(spec_path)[:-len(".step.json")]
  record = {"step": name, "samples": spec["samples"], "status": "failed"}
  dev = client.local_devices()[0]
  t0 = time.time()
  with open(os.path.join(os.path.dirname(spec_path), spec["module"]), "rb") as f:
    module = mlir.hlo_to_stablehlo(f.read())
  exe = client.compile_and_load(module, xla_client.DeviceList((dev,)), backend.get_compile_options(1, 1))
  record["compile_s"] = round(time.time() - t0, 1)
  rng = np.random.default_rng(0)
  n_in = len(spec["inputs"])
  host = [make_input(rng, spec["inputs"][i], *spec["params"][i]) if i < n_in else make_state(rng, *spec["params"][i])
          for i in range(len(spec["params"]))]
  host[spec["loss_param"]] = np.zeros((), np.float32)
  host[spec["skipped_param"]] = np.zeros((), np.float32)
  args = [jax.device_put(a, dev) for a in host]
  loss_out = next(o for o, p in spec["aliases"] if p == spec["loss_param"])
  skipped_out = next(o for o, p in spec["aliases"] if p == spec["skipped_param"])
  times = []
  for i in range(steps + 3):
    t = time.perf_counter()
    outs = exe.execute_sharded(args).disassemble_into_single_device_arrays()
    for o in outs:
      o[0].block_until_ready()
    if i >= 3:
      times.append(time.perf_counter() - t)
    if i == 0:  # loss_sum was fed 0: its new value is the first step's loss
      record["loss"] = float(np.asarray(outs[loss_out][0]))
      record["skipped"] = float(np.asarray(outs[skipped_out][0]))
    for o, p in spec["aliases"]:  # updated variables feed the next step, as in a training loop
      args[p] = outs[o][0]
  med = float(np.median(times)) * 1e3
  record.update(ms_median=round(med, 3), ms_min=round(float(np.min(times)) * 1e3, 3),
                samples_per_s=round(spec["samples"] / med * 1e3, 1), steps=steps, device=str(dev))
  ok = bool(np.isfinite(record["loss"])) and record["skipped"] == 0
  record["status"] = "ok" if ok else "loss not finite or update skipped"
  print(f"{name}: compile {record['compile_s']:.1f}s, step median {med:.2f} ms (min {record['ms_min']:.2f}), "
        f"{record['samples_per_s']:,.1f} samples/s, loss {record['loss']:.4f}, skipped {record['skipped']:.0f}"
        f"{'' if ok else '  FAILED: ' + record['status']}", flush=True)
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
      json.dump(record, f, indent=1)
  return 0 if ok else 1


def table(out_dir, order=None):
  """One screen: the versions, then a row per step (in measure.sh's order when given) with its PyTorch peer's
  samples/s beside it, eager and torch.compile'd (torch_peers.py's JSON in DIR; the peer named in the step's
  .step.json beside ORDER), and ours over the faster peer."""
  rows, peers = [], {}
  for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
    with open(path) as f:
      r = json.load(f)
    if "step" in r:
      rows.append(r)
    elif "peer" in r:
      peers[r["peer"], r["mode"]] = r
    elif "jax" in r:
      print(" ".join(f"{k} {v}" for k, v in r.items()))
  names, peer_of = [], {}
  if order:
    with open(order) as f:
      names = f.read().split()
    rows.sort(key=lambda r: names.index(r["step"]) if r["step"] in names else len(names))
    for name in names:
      spec = os.path.join(os.path.dirname(order), name + ".step.json")
      if os.path.exists(spec):
        with open(spec) as f:
          peer_of[name] = json.load(f).get("peer")
  torch_line = next((f"torch {p['torch']} on {p['device']}, {p['optimizer']}" for p in peers.values()
                     if "torch" in p), None)  # a peer that did not start has only its status
  if torch_line:
    print(torch_line)
  print(f"{'step':28} {'status':10} {'ms':>8} {'samples/s':>10} {'loss':>7} {'comp s':>6} "
        f"{'torch':>9} {'compiled':>9} {'ratio':>6}")
  for r in rows:
    ms, rate, loss = r.get("ms_median"), r.get("samples_per_s"), r.get("loss")
    cells = []
    for mode in ("eager", "compiled"):
      p = peers.get((peer_of.get(r["step"]), mode))
      cells.append("-" if p is None else p["samples_per_s"] if p["status"] == "ok" else p["status"][:9])
    best = max((c for c in cells if isinstance(c, float)), default=None)
    ratio = f"{rate / best:.2f}" if rate is not None and r["status"] == "ok" and best else "-"
    print(f"{r['step']:28} {r['status'][:10]:10} {ms if ms is not None else '-':>8} "
          f"{rate if rate is not None else '-':>10} {f'{loss:.3f}' if loss is not None else '-':>7} "
          f"{r.get('compile_s', '-'):>6} {cells[0]:>9} {cells[1]:>9} {ratio:>6}")
  if peers:
    print("torch / compiled: the PyTorch peer's samples/s at the same batch and precision; ratio: ours / faster peer")
  return 0


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("spec", nargs="?", help="STEP.step.json written by prepare_step.py")
  p.add_argument("--out", help="folder for STEP.json")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--versions", action="store_true")
  p.add_argument("--table", metavar="DIR", help="print the figures in DIR as one table")
  p.add_argument("--order", help="with --table: a file listing the steps in the order to print")
  args = p.parse_args(argv)
  if args.table:
    return table(args.table, args.order)
  if args.versions:
    jax, jaxlib, *_, client = load_jax()
    print(json.dumps({"jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__,
                      "platform": client.platform, "device": str(client.local_devices()[0])}))
    return 0
  if not args.spec:
    p.error("give STEP.step.json, --versions or --table")
  return time_step(args.spec, args.steps, args.out)


if __name__ == "__main__":
  sys.exit(main())
