"""Worked examples for vendors (importable as `--kernels=examples.vendor_kernels`)."""
