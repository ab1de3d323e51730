"""Which CPU kernel settings move the numbers: the demo's ``text`` stage (the Kim CNN, trained
6 times: 5 folds and the full fit; Word2Vec before it) run once per setting, each in a fresh
process, and its features hashed. Run it on two machines and compare the hashes: the same hash
is the same features, bit for bit.

    dvc repro ingest        # the demo manifest, if data/manifest.csv is not there yet
    python bench/numerics.py --manifest data/manifest.csv

Each setting is the environment on top of what ``python -m pipeline`` pins
(``pipeline.numerics.PINNED``); ``native`` is ``DIMMN_NUMERICS=native`` (every library chooses).
Run it alone: the machine has 2 cores. The last line is one JSON object:
{"cpu": model name, "flags": [the SIMD flags], "pinned": {...},
 "settings": {name: {"env": {...}, "features_md5": .., "file_md5": .., "word2vec_md5": .., "seconds": ..}}}.
"file_md5" is what dvc.lock records for data/features/text.npz.
"""
import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import UNPINNED_ENV, last_line

from pipeline.numerics import PINNED

ROOT = Path(__file__).resolve().parents[1]

# What another machine would choose differently, emulated here: OpenBLAS picks its kernels by
# CPU (SkylakeX on AVX-512 Intel, Zen on AMD, Haswell on AVX2), oneDNN and MKL by ISA, and MKL's
# AVX2 branch is its AUTO branch on a CPU that is not Intel's. Under the pin, only the rows that
# override it ("openblas_skylakex", "mkl_avx2_branch", "mkl_auto", "native") may differ.
SETTINGS = {
    "pinned": {},
    "openblas_zen": {"OPENBLAS_CORETYPE": "Zen"},
    "openblas_skylakex": {"OPENBLAS_CORETYPE": "SkylakeX"},
    "onednn_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},            # oneDNN as on a CPU without AVX-512
    "onednn_avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},   # ...or without AMX and VNNI
    "mkl_avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},          # MKL as on a CPU without AVX-512
    "mkl_sse42": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "mkl_avx2_branch": {"MKL_CBWR": "AVX2"},                  # the pin before 2026-12-02 (fourth session)
    "mkl_auto": {"MKL_CBWR": "AUTO"},                         # what that pin gives on AMD
    "native": {"DIMMN_NUMERICS": "native"},
    # MKL as on a CPU that is not Intel's: its vendor test answers no (a C shim, built with cc).
    "mkl_not_intel": {"LD_PRELOAD": "<shim>"},
    # NumPy's own SIMD loops as on an AVX2-only CPU (an AMD Zen 3).
    "numpy_avx2": {"NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL "
                                               "AVX512_SPR"},
}

# MKL asks these two whether the CPU is Intel's. torch's MKL exports them, so a preloaded library
# answers in their place: MKL_VERBOSE then names the generic "Intel(R) Architecture processors"
# code, as on an AMD CPU, and MKL_CBWR=AVX2 or AUTO give the COMPATIBLE branch's bits.
NOT_INTEL = "int mkl_serv_intel_cpu_true(void) { return 0; }\nint mkl_serv_intel_cpu(void) { return 0; }\n"


def not_intel_shim(workdir: Path) -> str:
    source, shim = workdir / "not_intel.c", workdir / "not_intel.so"
    source.write_text(NOT_INTEL)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(source)], check=True)
    return str(shim)

WORD2VEC = """
import hashlib, sys
import pandas as pd
from pipeline.numerics import pin
pin()
from extractors.text import TextConfig, load_vectors, tokenize
frame = pd.read_csv(sys.argv[1])
vectors = load_vectors(TextConfig(), [tokenize(t) for t in frame[frame["split"] == "train"]["text"].astype(str)])
print(hashlib.md5(vectors.vectors.tobytes()).hexdigest())
"""


def features_md5(path: Path) -> str:
    import numpy as np

    with np.load(path, allow_pickle=False) as store:
        return hashlib.md5(np.ascontiguousarray(store["features"]).tobytes()).hexdigest()


def run_setting(manifest: Path, env: dict, workdir: Path) -> dict:
    environ = {**UNPINNED_ENV, **env, "PYTHONPATH": str(ROOT)}   # the child pins itself
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "text", "--manifest", str(manifest),
                    "--out", str(workdir / "text.npz"), "--model", str(workdir / "text.pt"),
                    "--cache", str(workdir / "cache"), "--params", str(ROOT / "params.yaml")],
                   env=environ, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    w2v = subprocess.run([sys.executable, "-c", WORD2VEC, str(manifest)], env=environ, check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    file_md5 = hashlib.md5((workdir / "text.npz").read_bytes()).hexdigest()   # as dvc.lock records it
    return {"env": env, "features_md5": features_md5(workdir / "text.npz"), "file_md5": file_md5, "word2vec_md5": w2v,
            "seconds": round(seconds, 1)}


def cpu() -> tuple[str, list]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown", []
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return name, sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "data" / "manifest.csv")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    name, flags = cpu()
    out = {"cpu": name, "flags": flags, "pinned": PINNED, "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            workdir = Path(tmp) / setting
            workdir.mkdir()
            env = {k: not_intel_shim(workdir) if v == "<shim>" else v for k, v in SETTINGS[setting].items()}
            out["settings"][setting] = one = run_setting(args.manifest.resolve(), env, workdir)
            print(setting, json.dumps(one), flush=True)
    last_line(out)
