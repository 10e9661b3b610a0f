"""The parity tool: equivalent kernels pass, wrong ones exit non-zero with a table naming the hot spot and the
error, modules that cannot be loaded are bad input."""
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
  assert _rows(out, "lars_apply")[0].split()[:6] == ["lars_apply", "fp32", "4", "steps", "over", "7"]


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
    assert "DIFFERS [" in row and "> 1e-05" in row, row
    assert f"] {name}: largest difference in " in out, out


@pytest.mark.parametrize("module,hot_spot,where", [
    ("kernel_plugins.lars_epsilon", "lars_update", "tiny/kernel slot momentum"),
    ("kernel_plugins.lamb_epsilon", "lamb_update", "/kernel"),
])
def test_an_epsilon_off_the_contract_is_caught_and_the_row_names_the_variable(capsys, tmp_path, module, hot_spot,
                                                                             where):
  # The tiny-norm variable makes each documented epsilon decide its update; at norms near 1 these passed.
  report = tmp_path / "kernel_check.txt"
  code, out, _ = _check(capsys, f"--kernels={module}", "--steps=3", "--no-xla", f"--report={report}")
  assert code == 1, out
  (row,) = _rows(out, hot_spot)
  assert row.endswith("DIFFERS [1]"), out
  assert f"[1] {hot_spot}: largest difference in " in out and where in out and " after step " in out, out
  saved = report.read_text()
  assert saved.startswith(f"kernel_check --kernels={module} ") and out.split("\n", 1)[1].strip() in saved


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


@pytest.mark.slow  # kernel_check in a child process
def test_the_driver_keeps_the_report_with_the_kernels_snapshot(tmp_path):
  """run_benchmark.sh --kernels: the report lands beside the module's files, which build_tree copies into the
  submission's vendor_kernels/."""
  from tf_gp2bm.driver import package
  assert package.save_kernel_check(str(tmp_path), "kernel_plugins.lars_epsilon") == 1
  report = (tmp_path / package.KERNELS_SNAPSHOT / package.KERNEL_CHECK_REPORT).read_text()
  assert report.startswith("kernel_check --kernels=kernel_plugins.lars_epsilon ") and "DIFFERS [1]" in report
  assert "largest difference in tiny/kernel slot momentum" in report
