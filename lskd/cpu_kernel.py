"""The fused KD row kernel for CPUs (``kernels/kd_rows.cpp``), compiled on first use.

torch's JIT extension builder compiles it once per machine and instruction set (a C++ compiler and ninja
are needed; about a minute) into ``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``); later
runs load the built library in milliseconds, after checking it against its build manifest
(``lskd.kernel_build``). Where it cannot be built the loss runs its eager passes.
"""

import functools
import logging
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from lskd.errors import InvalidConfig
from lskd.kernel_build import BuildUnavailable, failure_reason, load_extension

logger = logging.getLogger(__name__)

KD_KERNELS = ("auto", "eager", "cpu")
SOURCE = Path(__file__).with_name("kernels") / "kd_rows.cpp"
# The instruction-set flags torch's own vectorised CPU code is compiled with, by torch's name for them.
ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2"],
}


def check_kernel(kernel: str) -> None:
    """A known choice; ``cpu`` (required, not merely preferred) is built here, so a run that cannot have it
    stops before any work."""
    if kernel not in KD_KERNELS:
        raise InvalidConfig(f"KD kernel must be one of {KD_KERNELS}, got {kernel!r}")
    if kernel == "cpu":
        _built()


@functools.cache
def _build() -> tuple[Optional[object], str]:
    """(the extension module, "") or (None, why it could not be built); tried once per process."""
    try:
        import ninja  # the pip package: its binary is not on PATH when a venv's scripts run unactivated

        if shutil.which("ninja") is None:
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
        _quiet_import_of_the_builder()
        logger.info("loading the fused KD loss kernel (compiled on first use for %s, about 40 s)", capability)
        module = load_extension(f"lskd_kd_rows_{capability.lower()}", SOURCE, ["-O3", *ISA_FLAGS.get(capability, [])])
    except BuildUnavailable as error:  # no compiler, a read-only cache without a valid build: eager still works
        return None, str(error)
    except Exception as error:  # no ninja, unsupported platform: the eager loss still works
        return None, failure_reason(error)
    return module, ""


def _quiet_import_of_the_builder():
    """torch's extension builder logs a CUDA_HOME warning when imported on a machine without CUDA, which
    concerns CUDA extensions only; this one is CPU code."""
    builder_logger = logging.getLogger("torch.utils.cpp_extension")
    level = builder_logger.level
    builder_logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load
    finally:
        builder_logger.setLevel(level)
    return load


def _built():
    module, reason = _build()
    if module is None:
        raise InvalidConfig(f"KD kernel 'cpu' could not be built ({reason}); use 'auto' or 'eager'")
    return module


def build_now() -> str:
    """Build (or verify) the kernel now and say in one line how that went: ``make setup`` calls it while
    fairseq's extensions compile on the other core, so that the first KD run does not wait for it."""
    module, reason = _build()
    if module is None:
        return f"fused KD loss kernel: not built ({reason}); the KD loss runs its eager passes"
    return "fused KD loss kernel: ready"


def inputs_fit(student: Tensor, teacher_logits: Optional[Tensor]) -> bool:
    """The kernel reads contiguous float32 CPU rows (logits of other dtypes or devices take the eager path)."""

    def fits(x: Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2 and x.is_contiguous()

    if not fits(student):
        return False
    return teacher_logits is None or (fits(teacher_logits) and teacher_logits.shape == student.shape)


def row_kernel(kernel: str, student: Tensor, teacher_logits: Optional[Tensor]):
    """The built kernel for these inputs under the ``kernel`` choice, or None for the eager passes.

    ``auto`` uses it where the inputs fit and it builds (one warning if it does not); ``cpu`` requires it.
    """
    check_kernel(kernel)
    if kernel == "eager":
        return None
    if not inputs_fit(student, teacher_logits):
        if kernel == "cpu":
            given = [("student", student)] + ([("teacher", teacher_logits)] if teacher_logits is not None else [])
            described = ", ".join(
                f"{name} {x.dtype} {tuple(x.shape)} on {x.device}{'' if x.is_contiguous() else ' (strided)'}"
                for name, x in given
            )
            raise InvalidConfig(f"KD kernel 'cpu' needs contiguous float32 CPU logits, got {described}")
        return None
    if kernel == "cpu":
        return _built()
    module, reason = _build()
    if module is None:
        _warn_once(reason)
    return module


@functools.cache
def _warn_once(reason: str) -> None:
    logger.warning("fused KD loss kernel unavailable (%s); using the eager loss", reason)
