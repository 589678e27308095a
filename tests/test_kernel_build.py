"""The kernel's build cache (lskd/kernel_build.py): a damaged library is caught before it is loaded (loading
a truncated one kills the process with SIGBUS), rebuilt where the cache is writable and skipped with one
warning where it is not; a read-only cache holding a valid build is used; checkouts share one build."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bad_input_helpers import read_only, without_write_override
from fixtures.loss_paths import require_row_kernel
from lskd import cpu_kernel
from lskd.kernel_build import MANIFEST, build_name, failure_reason, library_problem
from repo_root import REPO

# Runs the KD loss under --kd-kernel auto, checks it against the eager passes, says which passes ran.
LOSS = """
import torch
from lskd import cpu_kernel
from lskd.losses import distillation_terms
student = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
teacher = torch.randn(6, 50, generator=torch.Generator().manual_seed(1))
auto = distillation_terms(student, 2.0, teacher_logits=teacher, kernel="auto")
eager = distillation_terms(student, 2.0, teacher_logits=teacher, kernel="eager")
torch.testing.assert_close(auto.kl, eager.kl, rtol=1e-5, atol=1e-6)
print("passes:", "kernel" if cpu_kernel._build()[0] is not None else "eager")
"""


@pytest.fixture(scope="module")
def real_build() -> Path:
    """The folder of this machine's real build of the kernel (built once per test session)."""
    require_row_kernel()
    return Path(cpu_kernel._build()[0].__file__).parent


def cache_with(real_build: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A temporary TORCH_EXTENSIONS_DIR holding a copy of the real build, and the copied library."""
    extensions = tmp_path / "extensions"
    shutil.copytree(real_build, extensions / real_build.name)
    return extensions, extensions / real_build.name / f"{real_build.name}.so"


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def run_loss(extensions: Path, code: str = LOSS, pythonpath: Path = REPO, **env) -> subprocess.CompletedProcess:
    """A fresh process (the kernel loads once per process); without write permission even as root."""
    return subprocess.run(
        without_write_override([sys.executable, "-c", code]),
        env={**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions), "PYTHONPATH": str(pythonpath), **env},
        cwd=extensions.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )


def warnings_of(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "kernel" in line]


def truncate(library: Path) -> None:
    with library.open("r+b") as handle:
        handle.truncate(library.stat().st_size // 2)


def test_loading_a_truncated_build_unverified_kills_the_process(real_build, tmp_path):
    """The failure the manifest prevents: dlopen of a truncated library dies with SIGBUS, printing nothing."""
    extensions, library = cache_with(real_build, tmp_path)
    truncate(library)
    load = f"import torch, importlib.util as u; s = u.spec_from_file_location({library.stem!r}, {str(library)!r})\n"
    result = run_loss(extensions, load + "s.loader.exec_module(u.module_from_spec(s))")
    assert result.returncode == -signal.SIGBUS, result


def test_a_truncated_build_in_a_read_only_cache_runs_eager_with_one_warning(real_build, tmp_path):
    extensions, library = cache_with(real_build, tmp_path)
    truncate(library)
    read_only(extensions)
    before = snapshot(extensions)
    result = run_loss(extensions)
    assert result.returncode == 0, result.stderr
    assert "passes: eager" in result.stdout
    built = (real_build / library.name).stat().st_size
    assert warnings_of(result) == [
        f"fused KD loss kernel unavailable (the kernel cache {library.parent} is read-only and {library.name} "
        f"({library.stat().st_size} bytes) does not match its build manifest ({built} bytes, sha256 recorded)); "
        "using the eager loss"
    ]
    assert snapshot(extensions) == before


def test_a_read_only_cache_holding_a_valid_build_is_used_as_it_is(real_build, tmp_path):
    extensions, _ = cache_with(real_build, tmp_path)
    read_only(extensions)
    before = snapshot(extensions)
    result = run_loss(extensions)
    assert result.returncode == 0, result.stderr
    assert "passes: kernel" in result.stdout and warnings_of(result) == []
    assert snapshot(extensions) == before


def test_a_library_without_its_manifest_is_never_loaded(real_build, tmp_path):
    """A foreign library placed under the build's name (no manifest, or another build's) is not trusted."""
    extensions, library = cache_with(real_build, tmp_path)
    (library.parent / MANIFEST).unlink()
    read_only(extensions)
    result = run_loss(extensions)
    assert result.returncode == 0 and "passes: eager" in result.stdout
    assert [f"has no readable build manifest ({MANIFEST})" in line for line in warnings_of(result)] == [True]


def test_a_second_checkout_loads_the_same_build_without_rebuilding(real_build, tmp_path):
    """Two clones of the project used to rebuild the kernel in turn (same name, other source path)."""
    extensions, library = cache_with(real_build, tmp_path)
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "lskd", clone / "lskd", ignore=shutil.ignore_patterns("__pycache__"))
    assert build_name("x", clone / "lskd/kernels/kd_rows.cpp", ["-O3"]) == build_name("x", cpu_kernel.SOURCE, ["-O3"])
    before = snapshot(extensions)
    result = run_loss(extensions, LOSS + "import lskd; print(lskd.__file__)", pythonpath=clone)
    assert result.returncode == 0, result.stderr
    assert "passes: kernel" in result.stdout and str(clone) in result.stdout
    assert snapshot(extensions) == before
    changed = clone / "lskd/kernels/kd_rows.cpp"
    changed.write_text(changed.read_text() + "\n// another version\n")
    assert build_name("x", changed, ["-O3"]) != build_name("x", cpu_kernel.SOURCE, ["-O3"])
    assert build_name("x", cpu_kernel.SOURCE, ["-O2"]) != build_name("x", cpu_kernel.SOURCE, ["-O3"])


@pytest.mark.slow
def test_a_truncated_build_in_a_writable_cache_is_rebuilt(real_build, tmp_path):
    extensions, library = cache_with(real_build, tmp_path)
    truncate(library)
    result = run_loss(extensions)
    assert result.returncode == 0, result.stderr
    assert "passes: kernel" in result.stdout
    assert [line.split(": ")[0] for line in warnings_of(result)] == [
        f"rebuilding the KD loss kernel in {library.parent}"
    ]
    assert library_problem(library.parent, library) == ""
    again = run_loss(extensions)
    assert "passes: kernel" in again.stdout and warnings_of(again) == []


def test_no_compiler_is_named_in_the_fallback_warning(tmp_path):
    extensions = tmp_path / "extensions"
    result = run_loss(extensions, CXX="no-such-c++")
    assert result.returncode == 0 and "passes: eager" in result.stdout
    assert warnings_of(result) == [
        "fused KD loss kernel unavailable (no C++ compiler: 'no-such-c++' is not on PATH (install one, or name it "
        "in CXX)); using the eager loss"
    ]


def test_a_build_failure_reason_keeps_the_compiler_error_after_a_long_first_line():
    output = "Error building extension 'k': " + "x" * 400 + "\n[1/2] c++ -O3 " + "-I/inc " * 80 + "\n"
    error = RuntimeError(output + "kd_rows.cpp:3:10: fatal error: torch/extension.h: No such file or directory\n")
    reason = failure_reason(error)
    assert reason.startswith("RuntimeError: Error building extension 'k': xxx") and "\n" not in reason
    assert reason.endswith("(kd_rows.cpp:3:10: fatal error: torch/extension.h: No such file or directory)")


BUILD_NOW = "from lskd.cpu_kernel import build_now; print(build_now())"


def test_setup_builds_the_kernel_ahead_or_says_why_not(real_build, tmp_path):
    """``make setup`` runs build_now so the first KD run finds the kernel built; it never fails setup."""
    extensions, _ = cache_with(real_build, tmp_path)
    ready = run_loss(extensions, BUILD_NOW)
    assert (ready.returncode, ready.stdout.strip()) == (0, "fused KD loss kernel: ready")
    missing = run_loss(tmp_path / "empty", BUILD_NOW, CXX="no-such-c++")
    assert missing.returncode == 0
    assert missing.stdout.strip() == (
        "fused KD loss kernel: not built (no C++ compiler: 'no-such-c++' is not on PATH (install one, or name it "
        "in CXX)); the KD loss runs its eager passes"
    )
