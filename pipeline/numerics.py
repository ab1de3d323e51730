"""The same numbers on another x86-64 machine: which CPU kernels run, and on how many threads,
fixed before torch or numpy load.

torch (ATen), oneDNN, MKL and OpenBLAS each choose kernels for the CPU they find at run time
(AVX2, AVX-512, AMX; MKL and OpenBLAS take other paths on AMD than on Intel), and the thread
count splits reductions differently; different kernels add in different orders, so the same code,
data and seed train apart on two machines (a fresh clone elsewhere stopped at another epoch).
``pin()`` sets the settings below for this process and its workers unless the user set them;
``DIMMN_NUMERICS=native`` leaves every library its own choice (faster on a large machine,
but its numbers are its own). ``settings()`` is recorded in every lineage record. oneDNN has no
such setting: the networks trained here compute their convolutions as matrix products
(``model.layers.GemmConv1d``), so MKL does them. CTranslate2's own MKL keeps its fast AVX2
branch (``extractors.speech.fast_ctranslate2``).
"""
from __future__ import annotations

import os

# Measured on the demo's text stage (docs/results.md, bench/numerics.py): ATen's generic kernels,
# one thread instead of two, OpenBLAS's SkylakeX kernels instead of its Haswell ones, MKL's
# default (AUTO) path instead of a fixed one, and oneDNN's AVX2 kernels instead of its AVX-512
# ones each change every feature. OpenBLAS picks its kernels by CPU model (SkylakeX on AVX-512
# Intel, Zen on AMD, which gave the Haswell results, Haswell on AVX2 Intel), so it is held to its
# Haswell kernels, which every x86-64 CPU with AVX2 runs alike. MKL's AVX2 branch holds on Intel
# CPUs only (on others MKL takes its AUTO branch: Intel's CNR documentation), so MKL runs its
# COMPATIBLE branch (SSE2), the one it promises alike on every x86-64 CPU. It is slower (the demo's
# text stage 80 s against 45 s); MKL_CBWR=AVX2 in the environment is faster and alike on Intel only.
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",   # torch's own kernels: the AVX2 build, on any CPU that has it
    "OPENBLAS_CORETYPE": "Haswell",  # NumPy's / SciPy's OpenBLAS (PCA, Word2Vec): its AVX2 kernels
    "MKL_CBWR": "COMPATIBLE",        # MKL's conditional numerical reproducibility: one path on Intel and AMD
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
