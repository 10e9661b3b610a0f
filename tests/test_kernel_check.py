"""The parity tool: equivalent kernels pass, wrong ones exit non-zero with a table naming the hot spot and the
error, modules that cannot be loaded are bad input."""
import sys

import pytest

from conftest import run_module
from tf_gp2bm import kernel_check, kernels
from tf_gp2bm.kernels import memory


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


# --- --full_size: the step's memory from XLA's buffer assignment ------------------------------------------------

# The allocation lines of a real CPU buffer assignment (a small jit-compiled step: a variable updated in place, a
# returned scalar, a constant, a temp block and stack values), abridged to the lines the parser reads and their kind.
BUFFER_ASSIGNMENT = """BufferAssignment:
allocation 0: size 4000000, parameter 1, shape |f32[1000,1000]| at ShapeIndex {}, maybe-live-out:
 value: <13 add_add_fusion.clone @0> (size=4000000,offset=0): f32[1000,1000]{1,0}
allocation 1: size 4000000, parameter 0, shape |f32[1000,1000]| at ShapeIndex {}:
allocation 2: size 16, output shape is |(f32[], f32[1000,1000])|, maybe-live-out:
allocation 3: size 4, maybe-live-out:
allocation 4: size 352776, constant:
allocation 5: size 4, thread-local:
allocation 11: size 8000000, preallocated-temp:
 value: <21 dot.4 @0> (size=4000000,offset=4000000): f32[1000,1000]{1,0}
"""


def test_the_buffer_assignment_is_read_by_kind():
  got = memory.parse_buffer_assignment(BUFFER_ASSIGNMENT)
  assert got == memory.StepMemory(temp=8000000, constant=352776, output=20, parameter=8000000)
  assert got.step == 8000000 + 352776 + 20


def test_full_size_compiles_the_closed_flagfiles_at_their_per_gpu_batch():
  assert memory.per_replica_batch("closed", "bert") == 56  # 28 packed rows of 2.0 sequences
  assert memory.per_replica_batch("closed", "resnet") == 408
  assert memory.per_replica_batch("smoke", "bert") == 32


@pytest.mark.parametrize("args,message", [
    (["--memory_margin=-0.1"], "--memory_margin must be at least 0"),
    (["--full_size=smoke", "--tasks=bert,nosuch"], "--tasks: unknown nosuch"),
    (["--tasks=bert"], "give --full_size too"),
])
def test_bad_full_size_flags_are_bad_input(capsys, args, message):
  code, out, err = _check(capsys, "--kernels=kernel_plugins.lamb_fused_norms", *args)
  assert code == 2 and message in err and "hot spot" not in out


def test_an_unknown_size_is_bad_input(capsys):
  with pytest.raises(SystemExit) as exit:
    kernel_check.main(["--kernels=kernel_plugins.lamb_fused_norms", "--full_size=huge"])
  assert exit.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err


def _memory_row(out, task):
  (row,) = [line for line in out.split("full size", 1)[1].splitlines() if line.startswith(task + " ")]
  return row


@pytest.mark.slow  # compiles the smoke steps in child processes
def test_a_lamb_that_keeps_a_segment_id_per_element_passes_parity_and_fails_at_full_size(capsys, tmp_path):
  """The vendor's bug: numerically right, but a per-element constant as large as the model. BERT's step needs a
  third of its parameter bytes more."""
  report = tmp_path / "kernel_check.txt"
  code, out, _ = _check(capsys, "--kernels=kernel_plugins.lamb_segment_ids", "--steps=2", "--no-xla",
                        "--full_size=smoke", "--tasks=bert", f"--report={report}")
  assert code == 1, out
  assert _rows(out, "lamb_apply")[0].endswith(" ok"), out  # parity passes
  row = _memory_row(out, "bert")
  assert "flags/bert/smoke.flags at batch 32" in row and row.endswith("MORE MEMORY (> 10%)"), out
  extra = float(row.split("%")[0].split()[-1])
  assert 30 < extra < 40, row  # 4 bytes per element of 12 bytes of LAMB state per element (plus the batch)
  assert "bert: temp " in out and " -> 353 kB, outputs " in out, out  # the constant: an int32 per element
  assert "0/1 steps within the defaults' memory + 10% of their parameter bytes; bert over it or failed" in out
  saved = report.read_text()
  assert saved.startswith("kernel_check --kernels=kernel_plugins.lamb_segment_ids ") and "--full_size=smoke" in saved
  assert row in saved


@pytest.mark.slow  # compiles the smoke BERT step twice in child processes
def test_a_fused_lamb_without_model_sized_buffers_passes_at_full_size(capsys):
  code, out, _ = _check(capsys, "--kernels=kernel_plugins.lamb_fused_norms", "--steps=2", "--no-xla",
                        "--full_size=smoke", "--tasks=bert")
  assert code == 0, out
  row = _memory_row(out, "bert")
  assert row.endswith(" ok") and "flags/bert/smoke.flags at batch 32" in row, out
  assert "1/1 steps within the defaults' memory" in out


@pytest.mark.slow  # builds and traces the smoke BERT step in a child process
def test_a_step_without_the_modules_hot_spots_is_not_compiled(capsys):
  code, out, _ = _check(capsys, "--kernels=kernel_plugins.lars_fused_norms", "--steps=1", "--no-xla",
                        "--full_size=smoke", "--tasks=bert")
  assert code == 0, out
  assert _memory_row(out, "bert").endswith("not used (no replaced hot spot in this step)"), out
  assert "with the defaults" not in out and "bert: the module's build and trace (not compiled) took " in out
