"""Prepares an exported step for the device's JAX: each HLO `copy` becomes a same-shape `reshape` (the newer
StableHLO importer there rejects some copies; the computation is unchanged) and, with STRIP=1, the metadata (op
names and source lines, which only a profile reads) is dropped, about a third of the size. Needs TensorFlow: run it
where the export ran. usage: rewrite_copies.py STEP.hlo.pb [STRIP]"""
import sys

from tensorflow.compiler.xla.service import hlo_pb2

path, strip = sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "1"
module = hlo_pb2.HloModuleProto()
with open(path, "rb") as f:
  module.ParseFromString(f.read())
for computation in module.computations:
  for instruction in computation.instructions:
    if instruction.opcode == "copy":
      instruction.opcode = "reshape"
    if strip:
      instruction.ClearField("metadata")
with open(path, "wb") as f:
  f.write(module.SerializeToString())
