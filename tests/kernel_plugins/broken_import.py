"""A kernel module whose own dependency is missing."""
import acme_fused_kernels  # noqa: F401
