"""Damage the hostile sweep found: cache entries and fitted parts that load but hold the wrong
thing, and a cluster whose workers run elsewhere."""
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.base import ExtractorError, Result
from extractors.media import MediaError
from extractors.reduce import Reducer
from pipeline.cache import FeatureCache, extract_utterances
from pipeline.errors import PipelineError
from pipeline.parts import load_part, save_part


class Sized:
    """A cheap extractor: the clip's size as a vector; one that is gone is a MediaError, as PyAV's is."""
    calls = 0
    nan = False

    def extract(self, media, start=None, end=None):
        Sized.calls += 1
        if not os.path.isfile(media):
            raise MediaError(media, "file not found")
        return Result(np.array([os.path.getsize(media), np.nan if Sized.nan else 1.0], np.float32))


@pytest.fixture(autouse=True)
def reset():
    Sized.calls, Sized.nan = 0, False


def overwrite_one(cache_root, result: Result, which: int = 0) -> Path:
    entry = sorted(Path(cache_root).rglob("*.npz"))[which]
    FeatureCache(cache_root).put(entry.stem, result)
    return entry


@pytest.mark.parametrize("damage", [np.ones(5, np.float32), np.full(2, np.nan, np.float32)],
                         ids=["wrong_length", "all_nan"])
def test_a_cache_entry_with_a_wrong_or_non_finite_vector_is_extracted_again(tiny_corpus, tmp_path, damage):
    _, manifest = tiny_corpus
    extract_utterances(manifest, Sized, "sized", {}, tmp_path, progress=False)
    entry = overwrite_one(tmp_path, Result(damage))
    results, counts = extract_utterances(manifest, Sized, "sized", {}, tmp_path, progress=False)
    assert counts["repaired"] == 1 and counts["cached"] == len(manifest) - 1
    assert all(r.vector.shape == (2,) and np.isfinite(r.vector).all() for r in results.values())
    assert np.isfinite(FeatureCache(tmp_path).get(entry.stem).vector).all()


@pytest.mark.parametrize("which", [0, 1])
def test_a_wrong_length_entry_is_found_when_it_is_one_of_two(tiny_corpus, tmp_path, which):
    """No majority to go by: the entry extracted again sets the length, and the other is then redone."""
    _, manifest = tiny_corpus
    extract_utterances(manifest.iloc[:2], Sized, "sized", {}, tmp_path, progress=False)
    overwrite_one(tmp_path, Result(np.ones(5, np.float32)), which)
    results, counts = extract_utterances(manifest.iloc[:2], Sized, "sized", {}, tmp_path, progress=False)
    assert all(r.vector.shape == (2,) for r in results.values()) and 1 <= counts["repaired"] <= 2


def test_a_non_finite_vector_from_the_extractor_is_a_reason_never_a_vector(tiny_corpus, tmp_path):
    _, manifest = tiny_corpus
    Sized.nan = True
    results, _ = extract_utterances(manifest, Sized, "sized", {}, tmp_path, progress=False)
    assert all(r.vector is None and r.error == "non_finite" for r in results.values())


def test_the_reducer_refuses_non_finite_rows_rather_than_zeroing_them():
    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    reducer = Reducer("pca", 3).fit(x)
    x[4] = np.nan
    with pytest.raises(ExtractorError, match="1 of 20 rows.*non-finite"):
        reducer.transform(x)
    with pytest.raises(ExtractorError, match="1 of 20 rows.*non-finite"):
        Reducer("pca", 3).fit(x)


def test_a_fitted_part_with_non_finite_arrays_is_refused(tmp_path):
    path = save_part(Reducer("pca", 3).fit(np.random.default_rng(0).normal(size=(20, 6))), tmp_path / "audio.pt")
    blob = torch.load(path, weights_only=True)
    blob["state"]["arrays"]["scale"][:] = float("nan")
    torch.save(blob, path)
    with pytest.raises(PipelineError, match=f"{path}: .*non-finite.*scale"):
        load_part(path)


def copy_corpus(tiny_corpus, folder: Path):
    _, manifest = tiny_corpus
    folder.mkdir()
    for media in manifest["media"]:
        shutil.copy(media, folder / Path(media).name)
    return manifest.assign(media=[str(folder / Path(m).name) for m in manifest["media"]])


def test_a_file_gone_while_extracting_is_counted_but_not_cached(tiny_corpus, tmp_path):
    manifest = copy_corpus(tiny_corpus, tmp_path / "clips")
    first = manifest["media"].iloc[0]
    kept = Path(first).read_bytes()

    class Vanishing(Sized):
        def extract(self, media, start=None, end=None):
            if media == first and os.path.isfile(media):
                os.remove(media)   # a share unmounted between hashing and extracting
            return super().extract(media, start, end)

    results, counts = extract_utterances(manifest, Vanishing, "sized", {}, tmp_path / "cache", progress=False)
    assert results[manifest["utterance_id"].iloc[0]].error == "missing_file" and counts["missing_file"] == 1
    Path(first).write_bytes(kept)
    results, counts = extract_utterances(manifest, Sized, "sized", {}, tmp_path / "cache", progress=False)
    assert all(r.vector is not None for r in results.values()) and counts["computed"] == 1


def test_an_entry_poisoned_with_file_not_found_is_extracted_again(tiny_corpus, tmp_path):
    """A cache an older Dask run filled where its workers saw no files: the key is the file's
    content, so the file was there, and 'file not found' is no property of the clip."""
    _, manifest = tiny_corpus
    extract_utterances(manifest, Sized, "sized", {}, tmp_path, progress=False)
    overwrite_one(tmp_path, Result(None, error="media_error", message="data/demo/a.mp4: file not found"))
    results, counts = extract_utterances(manifest, Sized, "sized", {}, tmp_path, progress=False)
    assert counts["repaired"] == 1 and all(r.vector is not None for r in results.values())


def test_dask_workers_in_another_folder_find_the_manifest_s_relative_paths(tiny_corpus, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from extractors.audio import AudioConfig, AudioExtractor

    # distributed's nanny writes OMP/MKL/OPENBLAS_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_ into this
    # process's environment; later tests' worker processes would inherit them (a Whisper feature
    # from a worker then differed from one made here by 6e-6), so every variable is put back after
    for key in list(os.environ):
        monkeypatch.setenv(key, os.environ[key])
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_",
                "PYTHONHASHSEED", "__DASK_PARENT_PID"):
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    root, manifest = tiny_corpus
    config = AudioConfig(feature_set="eGeMAPSv02")
    factory = lambda: AudioExtractor(config)  # noqa: E731
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # the worker processes start here...
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.chdir(root)    # ...and the stage runs in the data's folder, with relative paths
        relative = manifest.assign(media=[os.path.relpath(m, root) for m in manifest["media"]])
        results, counts = extract_utterances(relative, factory, "audio", asdict(config), tmp_path / "cache",
                                             progress=False, scheduler=cluster.scheduler_address)
    assert all(r.vector is not None for r in results.values()), {u: r.message for u, r in results.items()}
    assert counts["computed"] == len(manifest)
