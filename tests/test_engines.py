"""Extraction beyond one machine: a Dask cluster's workers extract, the stage process writes."""
from dataclasses import asdict

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
