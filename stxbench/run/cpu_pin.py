"""CPU numerics pinned so that a run gives the same bits on every x86 CPU kind.

Fast CPU kernels pick their instruction set at run time (ATen's vectorised kernels by CPU
capability, MKL's GEMM and LAPACK by processor and vendor, oneDNN's convolutions by ISA and cache
sizes), and each choice sums in another order: the same run trains other last bits on another
CPU and ends on other spikes. A *pin* fixes every choice to one that any x86-64 CPU with AVX2
makes alike: ATen's AVX2 kernels, MKL's conditional-numerical-reproducibility branch COMPATIBLE
(the only branch MKL documents as identical on Intel and non-Intel CPUs), and convolutions
through MKL rather than oneDNN (oneDNN has no such mode). A protocol declares its pin
(``cpu_pin = "portable-v2"``); see docs/numerics.md for what was measured.

``portable-v1`` left one kernel to the CPU: ATen computes ``sqrt`` (and so AdamW's denominator)
with MKL's vector-math library, whose ``vmsSqrt`` is not correctly rounded (17 % of float32
results differ from IEEE ``sqrt`` in the last bit), dispatches on the CPU's vendor and model
(``mkl_vml_kernel_sSqrt_EXHAynn`` on an AMD EPYC) and ignores ``MKL_CBWR``. An entry made on an
AMD EPYC then re-ran on an Intel Xeon to 354 of 360 right instead of 359 (the kernel probe:
AdamW alone differs). ``portable-v2`` replaces ATen's CPU ``sqrt`` with IEEE square roots
(numpy's, one instruction on every x86-64 CPU): `install_ieee_sqrt`.

The libraries read their settings once, when they first run, so a pin is set in the
environment of a fresh process: `stxbench run` starts itself again with it (`restart`), and
the runner refuses a CPU run of a pinned protocol in a process where the pin is not in effect.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from stxbench.run.errors import RunFailed

#: set in the environment of the process `restart` starts, so that it does not start another
MARKER = "STXBENCH_CPU_PIN"

# MKL's conditional-numerical-reproducibility branch numbers (mkl_cbwr.h)
_MKL_CBWR_BRANCH = 1
_MKL_BRANCHES = {"OFF": 1, "AUTO": 2, "COMPATIBLE": 3}


@dataclass(frozen=True)
class CpuPin:
    id: str
    aten_capability: str  # ATEN_CPU_CAPABILITY; torch reports it upper-case
    mkl_cbwr: str  # MKL_CBWR
    mkldnn: bool  # torch.backends.mkldnn.enabled (oneDNN convolutions)
    ieee_sqrt: bool = False  # ATen's CPU sqrt replaced by IEEE sqrt (`install_ieee_sqrt`)

    def env(self) -> dict[str, str]:
        return {"ATEN_CPU_CAPABILITY": self.aten_capability, "MKL_CBWR": self.mkl_cbwr, MARKER: self.id}


PINS: dict[str, CpuPin] = {
    # exact on one CPU vendor only (MKL's sqrt, above); kept so that its entries can be read and re-run
    "portable-v1": CpuPin("portable-v1", aten_capability="avx2", mkl_cbwr="COMPATIBLE,STRICT", mkldnn=False),
    "portable-v2": CpuPin("portable-v2", aten_capability="avx2", mkl_cbwr="COMPATIBLE,STRICT", mkldnn=False,
                          ieee_sqrt=True),
}

#: the pin built-in CPU protocols use
CURRENT = "portable-v2"


@cache
def _mkl_branch_getter():
    """MKL's ``mkl_cbwr_get`` as torch's CPU library exports it, or None."""
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        getter = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    getter.restype, getter.argtypes = ctypes.c_int, [ctypes.c_int]
    return getter


def mkl_branch() -> str | None:
    """The MKL reproducibility branch in effect in this process (None if it cannot be asked)."""
    getter = _mkl_branch_getter()
    if getter is None:
        return None
    number = getter(_MKL_CBWR_BRANCH)
    return next((name for name, n in _MKL_BRANCHES.items() if n == number), str(number))


def current() -> dict[str, str | bool | None]:
    """The CPU numerics settings in effect in this process, as recorded in provenance."""
    return {
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_branch": mkl_branch(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "ieee_sqrt": ieee_sqrt_installed(),
    }


def mismatch(pin: CpuPin) -> str | None:
    """What in this process differs from the pin and cannot be changed any more (the kernels
    the libraries chose when they started), or None."""
    now = current()
    wanted = pin.mkl_cbwr.split(",")[0]
    if now["aten_capability"] != pin.aten_capability.upper():
        if os.environ.get("ATEN_CPU_CAPABILITY") == pin.aten_capability:
            return f"this CPU has no {pin.aten_capability.upper()} kernels (ATen runs {now['aten_capability']})"
        return f"ATen runs its {now['aten_capability']} kernels, not {pin.aten_capability.upper()}"
    if now["mkl_branch"] is not None and now["mkl_branch"] != wanted:
        return f"MKL runs its {now['mkl_branch']} branch, not {wanted}"
    if now["mkl_branch"] is None and os.environ.get("MKL_CBWR") != pin.mkl_cbwr:
        return f"MKL_CBWR is {os.environ.get('MKL_CBWR')!r}, not {pin.mkl_cbwr!r}"
    return None


def require(pin: CpuPin) -> None:
    """Put the pin in effect in this process, or refuse (before any work) if it was started
    without it. Nothing is changed in a process that is refused."""
    problem = mismatch(pin)
    if problem:
        raise RunFailed(
            f"the protocol pins CPU numerics ({pin.id}) but this process does not run them: {problem}; "
            f"start it through `stxbench run`, or with {' '.join(f'{k}={v}' for k, v in pin.env().items())}"
        )
    torch.backends.mkldnn.enabled = pin.mkldnn  # a flag torch reads at each convolution
    if pin.ieee_sqrt:
        install_ieee_sqrt()


def needs_restart(pin: CpuPin) -> bool:
    """The pin cannot be put in effect here, and this process was not started for it already
    (then `require` says why it is not in effect, rather than starting another)."""
    return mismatch(pin) is not None and os.environ.get(MARKER) != pin.id


def restart(pin: CpuPin, argv: list[str]) -> int:
    """Run ``stxbench ARGV`` again in a fresh process with the pin's environment; its exit code.
    Its output goes to this process's terminal, or, where Python has redirected ``sys.stdout``
    or ``sys.stderr`` (a caller capturing the CLI's output), through them once it ends. Ctrl-C
    reaches the new process from the terminal (it stops and says how to resume) and a SIGTERM
    sent here is passed on to it; this one waits for it either way."""
    env = {**os.environ, **pin.env()}
    cmd = [sys.executable, "-m", "stxbench", *argv]
    redirected = sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__
    pipe = subprocess.PIPE if redirected else None
    with subprocess.Popen(cmd, env=env, stdout=pipe, stderr=pipe, text=True) as child:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: child.terminate())}
        try:
            out, err = child.communicate()
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
    if redirected:
        sys.stdout.write(out)
        sys.stderr.write(err)
    return child.returncode


# --- IEEE square roots in place of MKL's (portable-v2) ---------------------------------------

_ieee_sqrt_library: torch.library.Library | None = None


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """IEEE ``sqrt`` of a CPU tensor, as ATen's would be if it rounded correctly: numpy's
    ``np.sqrt`` is the SQRTPS/SQRTPD instruction on every x86-64 CPU (exact by IEEE 754)."""
    if x.is_complex():
        raise RuntimeError("the portable CPU pin computes no complex square roots")
    if not x.is_floating_point():  # integers and bools promote, as torch.sqrt does
        x = x.to(torch.get_default_dtype())
    wide = x.dtype in (torch.float16, torch.bfloat16)  # numpy has no bfloat16: via float32
    source = (x.float() if wide else x).detach().contiguous()
    out = torch.empty_like(source)
    with np.errstate(invalid="ignore"):  # sqrt(-1) is NaN without a warning, as in torch
        np.sqrt(source.numpy(), out=out.numpy())
    return out.to(x.dtype) if wide else out


def _sqrt_(x: torch.Tensor) -> torch.Tensor:
    x.detach().copy_(_sqrt(x))
    return x


def _sqrt_out(x: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    result = _sqrt(x)
    out.resize_(result.shape)
    out.detach().copy_(result)
    return out


def install_ieee_sqrt() -> None:
    """Replace ATen's CPU kernels of ``sqrt``, ``sqrt_`` and ``sqrt.out`` in this process (once)
    by `_sqrt`. Autograd's formula is unchanged (it calls ``sqrt``'s result, not the kernel);
    compiled code (inductor) emits its own IEEE ``sqrt`` and never called MKL's. ``pow(x, 0.5)``
    still reaches MKL's kernel inside ATen: the numerics audit (tests/test_portable_numerics.py)
    holds every built-in run path free of it and of MKL's other vector-math ops."""
    global _ieee_sqrt_library
    if _ieee_sqrt_library is not None:
        return
    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():  # "overriding a previously registered kernel": the point
        warnings.simplefilter("ignore")
        library.impl("sqrt", _sqrt, "CPU")
        library.impl("sqrt_", _sqrt_, "CPU")
        library.impl("sqrt.out", _sqrt_out, "CPU")
    _ieee_sqrt_library = library


def ieee_sqrt_installed() -> bool:
    return _ieee_sqrt_library is not None
