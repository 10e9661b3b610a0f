"""Times exported XLA train steps (HLO from `tf_gp2bm.bench --export_hlo`) through JAX, where TensorFlow is absent.

usage: python3 step_timer.py MODULE.hlo.pb --out=DIR [--steps=20] [--allow_any_jax]
One module per process (measure.sh runs each under its own timeout). Prints one line and appends one JSON record
to DIR/figures.jsonl: compile seconds, median/min step ms, samples/s, the loss after the first and last step, and
how many float outputs are not finite. Loading a serialized HLO module has no public JAX API, so this uses two
internal ones (xla_client's hlo_to_stablehlo and the backend's compile_and_load); they are checked against the
pinned JAX version and the timer stops with one clear line on any other version (--allow_any_jax to try anyway).
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np

PINNED_JAX = "0.11.2"  # the device image's jax/jaxlib (docs of the lent machine); the internals below match it
DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "s32": "int32",
          "s64": "int64", "u32": "uint32", "u8": "uint8", "pred": "bool"}


def parameters(text):
  """[(dtype, shape)] of the ENTRY parameters in order, from the module's text form."""
  entry = text[text.index("\nENTRY"):]
  entry = entry[:entry.index("\n}")]
  found = {}
  for m in re.finditer(r"= (\w+)\[([\d,]*)\](?:\{[^}]*\})? parameter\((\d+)\)", entry):
    found[int(m.group(3))] = (m.group(1), tuple(int(d) for d in m.group(2).split(",") if d))
  return [found[i] for i in sorted(found)]


def aliases(text):
  """[(output index, parameter index)]: the state a step updates in place, fed back as the next step's input."""
  header = text[:text.index("\n")]
  return [(int(o), int(p)) for o, p in re.findall(r"\{(\d+)\}: \((\d+), \{\}", header)]


def synthetic(rng, dtype, shape, jnp):
  """Inputs that keep a train step finite: ids, labels and masks in {0, 1} (valid for every vocabulary, class
  count and segment count), floats small (weights, images, loss weights in [0, 1) so no negative weighting)."""
  if dtype == "pred":
    return np.ones(shape, bool)
  if dtype in ("s32", "s64", "u32", "u8"):
    return rng.integers(0, 2, size=shape).astype(DTYPES[dtype])
  return jnp.asarray(rng.uniform(0.0, 0.02, size=shape).astype(np.float32), dtype=DTYPES[dtype])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("module")
  parser.add_argument("--out", required=True)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--batch", type=int, required=True, help="samples per step, for samples/s")
  parser.add_argument("--allow_any_jax", action="store_true")
  args = parser.parse_args(argv)
  import jax
  import jaxlib
  versions = f"jax {jax.__version__}, jaxlib {jaxlib.__version__}"
  if not args.allow_any_jax and (jax.__version__, jaxlib.__version__) != (PINNED_JAX, PINNED_JAX):
    print(f"step_timer: {versions}, pinned {PINNED_JAX}: the internal HLO loader may differ; stopping "
          f"(--allow_any_jax to try)", file=sys.stderr)
    return 2
  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  from jax._src import xla_bridge  # internal: see the module docstring
  from jax._src.lib import xla_client

  name = os.path.basename(args.module).replace(".hlo.pb", "")
  text = open(args.module.replace(".hlo.pb", ".hlo.txt")).read()
  backend = xla_bridge.get_backend()
  device = backend.local_devices()[0]
  start = time.time()
  stablehlo = xla_client._xla.mlir.hlo_to_stablehlo(open(args.module, "rb").read())
  executable = backend.compile_and_load(stablehlo, xla_client.DeviceList((device,)), xla_client.CompileOptions())
  compile_s = time.time() - start
  rng = np.random.default_rng(0)
  inputs = [jax.device_put(synthetic(rng, d, s, jnp), device) for d, s in parameters(text)]
  feedback = aliases(text)
  times, losses, outputs = [], [], []
  for i in range(args.steps + 3):  # 3 warm-up steps
    start = time.perf_counter()
    outputs = [o[0] for o in executable.execute_sharded(inputs).disassemble_into_single_device_arrays()]
    for o in outputs:
      o.block_until_ready()
    if i >= 3:
      times.append(time.perf_counter() - start)
    # The loss: the step's float scalar outputs (weights and slots are tensors; counters are integers).
    scalars = [float(np.asarray(o, np.float64)) for o in outputs if o.ndim == 0 and jnp.issubdtype(o.dtype, jnp.floating)]
    losses.append(scalars[0] if scalars else None)
    for o, p in feedback:
      inputs[p] = outputs[o]
  not_finite = sum(int(not np.all(np.isfinite(np.asarray(o, np.float64)))) for o in outputs
                   if jnp.issubdtype(o.dtype, jnp.floating))
  median_ms = float(np.median(times)) * 1e3
  record = dict(step=name, device=str(device), versions=versions, compile_s=round(compile_s, 1),
                median_ms=round(median_ms, 3), min_ms=round(float(np.min(times)) * 1e3, 3), batch=args.batch,
                samples_per_s=round(args.batch / median_ms * 1e3, 1), loss_first=losses[0], loss_last=losses[-1],
                outputs=len(outputs), not_finite_outputs=not_finite,
                finite=losses[-1] is not None and bool(np.isfinite(losses[-1])) and not not_finite)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "figures.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")
  print(f"{name}: compile {compile_s:.1f} s, step {median_ms:.2f} ms, {record['samples_per_s']} samples/s, "
        f"loss {losses[0]} -> {losses[-1]}, {not_finite}/{len(outputs)} outputs not finite ({versions})")
  return 0 if record["finite"] else 1


if __name__ == "__main__":
  sys.exit(main())
