"""Extraction beyond one machine: a Dask cluster's workers extract, the stage process writes."""
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from extractors.audio import AudioConfig, AudioExtractor
from pipeline.cache import extract_utterances


def test_a_dask_cluster_writes_byte_identical_cache_entries(tiny_corpus, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, manifest = tiny_corpus
    config = AudioConfig(feature_set="eGeMAPSv02")
    factory = lambda: AudioExtractor(config)  # noqa: E731
    extract_utterances(manifest, factory, "audio", asdict(config), tmp_path / "local", workers=1, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        _, counts = extract_utterances(manifest, factory, "audio", asdict(config), tmp_path / "dask", progress=False,
                                       scheduler=cluster.scheduler_address)     # as --scheduler tcp://... gives it
        assert counts["computed"] == len(manifest)
        _, again = extract_utterances(manifest, factory, "audio", asdict(config), tmp_path / "dask", progress=False,
                                      scheduler=cluster.scheduler_address)
        assert again["computed"] == 0 and again["cached"] == len(manifest)   # resume: nothing redone
    local = {p.relative_to(tmp_path / "local"): p.read_bytes() for p in (tmp_path / "local").rglob("*.npz")}
    dask = {p.relative_to(tmp_path / "dask"): p.read_bytes() for p in (tmp_path / "dask").rglob("*.npz")}
    assert len(local) == len(manifest) and local == dask


def test_a_dask_worker_pins_the_kernels_before_its_extractor_loads(monkeypatch):
    """A worker started by hand (``dask worker``) has none of ``python -m pipeline``'s settings:
    unpinned, its Whisper vectors differed from a local run's by 1e-5 under the same cache keys."""
    from pipeline import cache, numerics

    seen = {}

    class Probe:
        def __init__(self):
            seen.update({key: __import__("os").environ.get(key) for key in numerics.PINNED})

        def extract(self, media, start, end):
            return cache.Result(None, error="probe")

    for key in (*numerics.PINNED, "DIMMN_NUMERICS"):   # set first, so that the pinning is undone after the test
        monkeypatch.setenv(key, "unset")                  # (later tests' workers would inherit it)
        monkeypatch.delenv(key)
    monkeypatch.setattr(cache, "_DASK_EXTRACTORS", {})
    cache._compute(Probe, "token", ("key", "clip.mp4", None, None))
    if numerics._has_avx2():
        assert seen == numerics.PINNED


MKL_BRANCHES = """
import ctypes, glob, os
from pipeline.numerics import pin
pin()
import torch, ctranslate2
from extractors.speech import fast_ctranslate2
fast_ctranslate2()
ct2 = ctypes.CDLL(glob.glob(os.path.dirname(ctranslate2.__file__) + "/../ctranslate2.libs/libctranslate2*.so*")[0])
aten = ctypes.CDLL(glob.glob(os.path.dirname(torch.__file__) + "/lib/libtorch_cpu.so")[0])
print(aten.mkl_serv_cbwr_get(1), ct2.mkl_serv_cbwr_get(1))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux wheels' MKL copies")
def test_torch_s_mkl_takes_the_branch_every_cpu_shares_and_ctranslate2_s_keeps_its_fast_one():
    """torch's MKL on COMPATIBLE (3 in mkl_cbwr.h), which MKL promises alike on Intel and AMD;
    CTranslate2's own MKL on AVX2 (10) on Intel, where on COMPATIBLE Whisper transcribes 10x slower.
    Elsewhere CTranslate2 computes in oneDNN, not MKL, and its copy is left as it is (AVX2 is an
    Intel-only branch: an AMD EPYC transcribed as fast on COMPATIBLE as on AUTO)."""
    from extractors.speech import genuine_intel
    from pipeline import numerics

    if not numerics._has_avx2():
        pytest.skip("nothing is pinned on a CPU without AVX2")
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED and k != "DIMMN_NUMERICS"}
    run = subprocess.run([sys.executable, "-c", MKL_BRANCHES], capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["3", "10" if genuine_intel() else "3"]


def test_the_numerics_trace_names_the_first_operator_whose_bits_differ():
    """bench/numerics_trace.py: two machines' traces of the text CNN's training are compared
    operator by operator; the first whose outputs differ is named, and equal runs differ nowhere."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import numerics_trace as nt

    def traced(scale: float, embedding: str = "00") -> dict:
        with nt.Trace() as trace:
            x = torch.arange(6.0).reshape(2, 3)
            y = (x.relu() * scale).sum()
            torch.empty(4)   # uninitialised memory is no value: never compared
            y.exp()
        return nt.packed({"inputs": {"embedding": embedding}, "names": trace.names, "digests": trace.digests})

    one, again, other = traced(1.0), traced(1.0), traced(2.0)
    assert nt.first_difference(again, one)["first"] is None
    differs = nt.first_difference(other, one)
    names, _ = nt.unpacked(one)
    assert differs["operator"] == "aten.mul" and names[differs["first"]] == "aten.mul"
    assert differs["before"][-1] == "aten.relu" and "aten.empty" not in names
    assert nt.first_difference(traced(1.0, "01"), one)["inputs_differ"] == ["embedding"]
