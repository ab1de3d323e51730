"""The per-utterance cache: incremental, resumable, parameter-keyed, atomic."""
import os

import numpy as np
import pytest

from extractors.base import Result
from pipeline.cache import FeatureCache, extract_utterances


class Counting:
    """A cheap extractor: the clip's size as a vector; counts its calls; can fail after n."""
    calls = 0
    fail_after = None

    def extract(self, media, start=None, end=None):
        Counting.calls += 1
        if Counting.fail_after is not None and Counting.calls > Counting.fail_after:
            raise KeyboardInterrupt("killed")
        import os
        return Result(np.array([os.path.getsize(media), start or 0.0], np.float32))


@pytest.fixture(autouse=True)
def reset():
    Counting.calls, Counting.fail_after = 0, None


def test_adding_clips_computes_only_the_new_ones(tiny_corpus, tmp_path):
    _, manifest = tiny_corpus
    first, counts = extract_utterances(manifest.iloc[:2], Counting, "count", {"p": 1}, tmp_path, progress=False)
    assert counts["computed"] == 2 and Counting.calls == 2
    results, counts = extract_utterances(manifest, Counting, "count", {"p": 1}, tmp_path, progress=False)
    assert counts["computed"] == 1 and Counting.calls == 3
    assert np.array_equal(results[manifest["utterance_id"][0]].vector, first[manifest["utterance_id"][0]].vector)


def test_changed_parameter_or_segment_misses(tiny_corpus, tmp_path):
    _, manifest = tiny_corpus
    extract_utterances(manifest, Counting, "count", {"p": 1}, tmp_path, progress=False)
    _, counts = extract_utterances(manifest, Counting, "count", {"p": 2}, tmp_path, progress=False)
    assert counts["computed"] == len(manifest)
    cut = manifest.assign(start=0.1, end=0.5)
    results, counts = extract_utterances(cut, Counting, "count", {"p": 1}, tmp_path, progress=False)
    assert counts["computed"] == len(manifest) and results[cut["utterance_id"][0]].vector[1] == pytest.approx(0.1)


def test_a_killed_run_resumes_without_redoing_finished_clips(tiny_corpus, tmp_path):
    _, manifest = tiny_corpus
    Counting.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        extract_utterances(manifest, Counting, "count", {}, tmp_path, progress=False)
    Counting.fail_after, Counting.calls = None, 0
    _, counts = extract_utterances(manifest, Counting, "count", {}, tmp_path, progress=False)
    assert counts["computed"] == len(manifest) - 2 and Counting.calls == len(manifest) - 2


def test_worker_processes_give_the_same_results(tiny_corpus, tmp_path):
    _, manifest = tiny_corpus
    one, _ = extract_utterances(manifest, Counting, "count", {}, tmp_path / "a", workers=1, progress=False)
    two, _ = extract_utterances(manifest, Counting, "count", {}, tmp_path / "b", workers=2, progress=False)
    assert all(np.array_equal(one[u].vector, two[u].vector) for u in one)


def test_write_is_atomic(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    cache.put("ab" * 32, Result(np.ones(3)))

    def broken_savez(handle, **arrays):
        handle.write(b"half an entry")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        cache.put("ab" * 32, Result(np.zeros(3)))
    with pytest.raises(OSError):
        cache.put("cd" * 32, Result(np.zeros(3)))
    monkeypatch.undo()
    assert np.array_equal(cache.get("ab" * 32).vector, np.ones(3))  # the old entry, whole
    assert cache.get("cd" * 32) is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_failures_are_cached_with_their_reason(tmp_path):
    import pandas as pd
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    manifest = pd.DataFrame([{"utterance_id": "u1", "media": str(broken), "start": np.nan, "end": np.nan},
                             {"utterance_id": "u2", "media": str(tmp_path / "gone.mp4"), "start": np.nan, "end": np.nan}])

    class Decoding:
        def extract(self, media, start=None, end=None):
            from extractors.media import load_audio
            return Result(load_audio(media, start, end)[:3])

    results, _ = extract_utterances(manifest, Decoding, "decode", {}, tmp_path / "c", progress=False)
    assert results["u1"].vector is None and results["u1"].error == "corrupt" and "broken.mp4" in results["u1"].message
    assert results["u2"].error == "missing_file"
    _, counts = extract_utterances(manifest, Decoding, "decode", {}, tmp_path / "c", progress=False)
    assert counts["computed"] == 0


def test_atomic_writes_make_files_others_can_read(tmp_path):
    from pipeline.artifacts import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "out.bin", lambda handle: handle.write(b"x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


class FailsToStart:
    """An extractor whose construction fails: in every process, or only in worker processes."""
    def __init__(self, parent=None):
        if parent is None or os.getpid() != parent:
            raise ValueError("'MFCC' is not a valid AudioFeatureSet")

    def extract(self, media, start=None, end=None):
        return Result(np.zeros(2, np.float32))


@pytest.mark.parametrize("workers", [1, 2])
def test_an_extractor_that_cannot_start_fails_the_stage_at_once(tiny_corpus, tmp_path, workers):
    """Round 2 found a pool respawning workers forever when the extractor's constructor raised."""
    from pipeline.cache import WorkerStartError

    _, manifest = tiny_corpus
    with pytest.raises(WorkerStartError, match="stage process.*MFCC"):
        extract_utterances(manifest, FailsToStart, "f", {}, tmp_path, workers=workers, progress=False)
    assert not list(tmp_path.rglob("*.npz"))


def test_a_worker_that_cannot_start_ends_the_pool_with_its_message(tiny_corpus, tmp_path):
    from functools import partial

    from pipeline.cache import WorkerStartError

    _, manifest = tiny_corpus
    factory = partial(FailsToStart, parent=os.getpid())
    with pytest.raises(WorkerStartError, match="worker process.*MFCC"):
        extract_utterances(manifest, factory, "f", {}, tmp_path, workers=2, progress=False)


def test_a_dask_worker_that_cannot_start_fails_the_stage(tiny_corpus, tmp_path):
    from functools import partial

    from distributed import Client, LocalCluster

    from pipeline.cache import WorkerStartError

    _, manifest = tiny_corpus
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with pytest.raises(WorkerStartError, match="Dask worker.*MFCC"):
            extract_utterances(manifest, partial(FailsToStart, parent=os.getpid()), "f", {}, tmp_path,
                               scheduler=client, progress=False)
