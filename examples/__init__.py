"""Worked vendor kernel modules (docs/vendor_kernels.md): `--kernels=examples.vendor_kernels` (TensorFlow ops) and
`--kernels=examples.custom_op` (a compiled C++ op)."""
