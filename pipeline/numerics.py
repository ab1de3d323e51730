"""The same numbers on another x86-64 machine: which CPU kernels run, and on how many threads,
fixed before torch or numpy load.

torch (ATen), oneDNN and MKL each choose kernels for the CPU they find at run time (AVX2,
AVX-512, AMX, and MKL takes other paths on AMD than on Intel), and the thread count splits
reductions differently; different kernels add in different orders, so the same code, data and
seed train apart on two machines (a fresh clone elsewhere stopped at another epoch).
``pin()`` sets the settings below for this process and its workers unless the user set them;
``DIMMN_NUMERICS=native`` leaves every library its own choice (faster on a large machine,
but its numbers are its own). ``settings()`` is recorded in every lineage record.
"""
from __future__ import annotations

import os

# Measured on the demo's text stage (docs/results.md): ATen's generic kernels, or one thread
# instead of two, change every feature; AVX2 against AVX-512 kernels (ATen, MKL) changed none
# here. oneDNN is left to choose: capping it at AVX2 made the stage more than 5x slower here, so
# its kernels are the bound that remains.
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",   # torch's own kernels: the AVX2 build, on any CPU that has it
    "MKL_CBWR": "AVX2",              # MKL's conditional numerical reproducibility: one code path
    "OMP_NUM_THREADS": "2",          # one thread count everywhere: reductions split alike
    "MKL_NUM_THREADS": "2",
    "MKL_DYNAMIC": "FALSE",          # ...and MKL may not use fewer threads when the machine is busy
    "OMP_DYNAMIC": "FALSE",
}


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as handle:
            return " avx2" in handle.read(200_000)
    except OSError:   # not Linux: leave the libraries to choose
        return False


def pin() -> dict:
    """Set the pinned settings (the user's own values win); returns what is in force."""
    if os.environ.get("DIMMN_NUMERICS", "pinned") == "native" or not _has_avx2():
        return settings()
    for key, value in PINNED.items():
        os.environ.setdefault(key, value)
    return settings()


def settings() -> dict:
    return {key: os.environ.get(key) for key in ("DIMMN_NUMERICS", *PINNED)}
