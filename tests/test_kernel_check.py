"""The parity tool: equivalent kernels pass, wrong ones exit non-zero with a table naming the hot spot and the
error, modules that cannot be loaded are bad input."""
import re
import sys

import pytest

from conftest import run_module
from tf_gp2bm import kernel_check, kernels


@pytest.fixture(autouse=True)
def clean_registry():
  kernels.reset()
  for mod in [m for m in sys.modules if m.startswith("kernel_plugins.") or m == "examples.vendor_kernels"]:
    del sys.modules[mod]
  yield
  kernels.reset()


def _check(capsys, *args):
  code = kernel_check.main(list(args))
  out = capsys.readouterr()
  return code, out.out, out.err


def _rows(out, hot_spot):
  return [line for line in out.splitlines() if line.startswith(hot_spot + " ")]


@pytest.mark.slow  # compiles the update at every precision
def test_worked_example_is_within_tolerance_at_every_precision_and_compiles(capsys):
  code, out, _ = _check(capsys, "--kernels=examples.vendor_kernels")
  assert code == 0, out
  assert "replaces batch_norm, gelu, layer_norm; precisions fp32, bf16, fp16" in out
  rows = _rows(out, "batch_norm") + _rows(out, "layer_norm") + _rows(out, "gelu")
  assert len(rows) == 2 * 3 + 2 * 3 + 3
  assert all(row.split()[-2:] == ["ok", "ok"] for row in rows), out


def test_a_multi_tensor_lars_passes_the_update_steps(capsys):
  code, out, _ = _check(capsys, "--kernels=kernel_plugins.lars_fused_norms", "--steps=4")
  assert code == 0, out
  assert _rows(out, "lars_apply")[0].split()[:6] == ["lars_apply", "fp32", "4", "steps", "over", "9"]


def test_erf_gelu_differs_and_exits_non_zero(capsys):
  code, out, _ = _check(capsys, "--kernels=kernel_plugins.erf_gelu", "--precision=fp32", "--no-xla")
  assert code == 1
  (row,) = _rows(out, "gelu")
  assert "> 1e-05" in row and row.endswith("DIFFERS") and "not checked" in row
  assert "0/1 checks within tolerance; 1 differ from the defaults" in out


def test_wrong_output_layout_is_reported_with_the_contract_message(capsys):
  code, out, _ = _check(capsys, "--kernels=kernel_plugins.wrong_layout", "--precision=bf16")
  assert code == 1
  assert len(_rows(out, "attention_core")) == 4
  assert ("[1] KernelError: attention_core from kernel_plugins.wrong_layout returned [2,4,16,16] bfloat16; "
          "expected [2,16,4,16] bfloat16") in out


def test_wrong_optimizer_updates_differ_over_the_steps(capsys):
  code, out, _ = _check(capsys, "--kernels=kernel_plugins.halve", "--precision=fp32", "--steps=2", "--no-xla")
  assert code == 1
  for name in ("lars_apply", "lars_update", "lamb_apply", "lamb_update"):
    (row,) = _rows(out, name)
    assert re.search(r"DIFFERS \[\d+\]$", row) and "> 1e-05" in row, row


@pytest.mark.parametrize("module,message", [
    ("kernel_plugins.registers_nothing", "--kernels=kernel_plugins.registers_nothing: the module registered no "
                                         "kernels"),
    ("kernel_plugins.broken_import", "--kernels=kernel_plugins.broken_import: importing the module failed"),
])
def test_unloadable_module_is_bad_input(capsys, module, message):
  code, out, err = _check(capsys, f"--kernels={module}")
  assert code == 2 and message in err and "hot spot" not in out


@pytest.mark.slow
def test_command_line_exit_codes():
  out = run_module("tf_gp2bm.kernel_check", "--kernels=no.such.vendor")
  assert out.returncode == 2 and "error: --kernels=no.such.vendor: importing the module failed" in out.stderr
  out = run_module("tf_gp2bm.kernel_check")
  assert out.returncode == 2 and "--kernels" in out.stderr


@pytest.mark.parametrize("module,hot_spot,worst", [
    ("kernel_plugins.lars_epsilon_1e5", "lars_apply", "tiny_norm/kernel (momentum slot)"),
    ("kernel_plugins.lamb_epsilon_1e4", "lamb_update", "tiny_grad/kernel (value)"),
])
def test_a_wrong_optimizer_epsilon_is_caught_and_the_row_names_the_variable_and_slot(capsys, module, hot_spot, worst):
  """Norms near 1 hide the epsilons; the contract's tiny-norm variables show them."""
  code, out, _ = _check(capsys, f"--kernels={module}", "--precision=fp32", "--steps=2", "--no-xla")
  assert code == 1, out
  (row,) = _rows(out, hot_spot)
  assert row.endswith("DIFFERS [1]"), out
  (note,) = [line for line in out.splitlines() if line.startswith("[1] differs: ")]
  assert note[len("[1] differs: "):].startswith(f"{worst} "), note  # the worst variable and slot first
  assert "from step 1" in note
