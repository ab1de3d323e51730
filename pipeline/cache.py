"""The per-utterance feature cache and the worker pool that fills it.

An entry is keyed by the clip's content hash, its segment and the extractor's own parameters,
so adding clips computes only the new ones, a changed parameter misses, and a killed run
resumes: each finished clip was already written (temp file + rename, so never half-written).
A clip that cannot give features (no audio track, corrupt file...) is cached as a failure with
its reason, so it is reported every time but not retried. A file the worker cannot see is not
cached: that is the worker's environment, not the clip (the next run looks again).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from extractors.base import ExtractorError, Result, parallel_workers
from pipeline.artifacts import atomic_write
from pipeline.lineage import file_hash


def cache_key(content_hash: str, start, end, extractor_name: str, params: dict) -> str:
    segment = [None if v is None or v != v else round(float(v), 4) for v in (start, end)]  # v != v: NaN
    blob = json.dumps([content_hash, segment, extractor_name, params], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class CorruptEntry(Exception):
    def __init__(self, path, cause):
        super().__init__(f"{path}: damaged cache entry ({type(cause).__name__}: {cause})")
        self.path = path


class FeatureCache:
    def __init__(self, root):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Result | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                vector = data["vector"] if "vector" in data.files else None
                result = Result(vector, meta.get("info", {}), meta.get("error"), meta.get("message"))
            _check_entry(result)
            return result
        except (ValueError, TypeError, AttributeError, OSError, EOFError, KeyError,
                zipfile.BadZipFile) as exc:  # JSONDecodeError is a ValueError
            raise CorruptEntry(path, exc) from exc

    def put(self, key: str, result: Result) -> None:
        arrays = {"meta": np.array(json.dumps({"info": result.info, "error": result.error,
                                               "message": result.message}))}
        if result.vector is not None:
            arrays["vector"] = np.asarray(result.vector)
        atomic_write(self.path(key), lambda handle: np.savez(handle, **arrays))


def _check_entry(result: Result) -> None:
    """An entry that reads but cannot be what extraction wrote: ValueError (TypeError: no numbers)."""
    if result.vector is not None and not np.isfinite(result.vector).all():   # never zeros marked present
        raise ValueError(f"its vector holds {int((~np.isfinite(result.vector)).sum())} non-finite values")
    if result.error and str(result.message).endswith(": file not found"):
        # written by a run whose worker could not see the file; the key is the file's content, so it was there
        raise ValueError("a 'file not found' failure for a file that was hashed")


def _extract(extractor, media: str, start, end) -> Result:
    """One clip's Result; a failure is its reason, a file this worker cannot see is ``missing_file``
    (never cached) and a non-finite vector is ``non_finite`` (never zeros marked present)."""
    try:
        result = extractor.extract(media, start, end)
    except ExtractorError as exc:
        reason = getattr(exc, "reason", "extractor_error") if os.path.isfile(media) else "missing_file"
        return Result(None, error=reason, message=str(exc))
    if result.vector is not None and not np.isfinite(result.vector).all():
        bad = int((~np.isfinite(result.vector)).sum())
        return Result(None, result.info, "non_finite", f"{media}: {bad} of {np.size(result.vector)} values "
                                                       f"NaN or infinite")
    return result


def cacheable(result: Result) -> bool:
    return result.error != "missing_file"


class WorkerStartError(ExtractorError):
    """An extractor that could not be built in a worker; the stage fails with its message."""


def build_extractor(factory, where: str = "the stage process"):
    """``factory()``, any failure as one clear error. The stage builds its extractor once itself
    before any worker starts, so a bad setting fails there and never inside a pool."""
    try:
        return factory()
    except ExtractorError:
        raise
    except Exception as exc:  # an unknown choice, a missing model file, a library that will not load
        raise WorkerStartError(f"cannot start the extractor in {where} ({type(exc).__name__}: {exc})") from exc


_WORKER = {}


def _start_worker(factory, cache_root):
    """A pool worker: Ctrl-C is the parent's to handle (it stops the pool and says how to resume);
    each worker's own KeyboardInterrupt printed a traceback per process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(factory, cache_root)


def _init_worker(factory, cache_root):
    # A pool respawns a worker whose initializer raises, forever: keep the error and let the
    # first task raise it instead, which ends the pool and reaches the stage.
    try:
        _WORKER["extractor"], _WORKER["error"] = build_extractor(factory, "a worker process"), None
    except ExtractorError as exc:
        _WORKER["extractor"], _WORKER["error"] = None, str(exc)
    _WORKER["cache"] = FeatureCache(cache_root)


def _run_one(job):
    if _WORKER.get("error"):
        raise WorkerStartError(_WORKER["error"])
    key, media, start, end = job
    result = _extract(_WORKER["extractor"], media, start, end)
    if cacheable(result):
        _WORKER["cache"].put(key, result)
        return key, None
    return key, result   # only what is not cached comes back


def _compute(factory, token: str, job):
    """One clip on a Dask worker: (key, Result); the extractor is built once per worker process."""
    extractor = _DASK_EXTRACTORS.get(token)
    if extractor is None:
        from pipeline.numerics import pin

        pin()   # a worker started by hand has no pinned kernels: set them before the extractor loads torch
        extractor = _DASK_EXTRACTORS[token] = build_extractor(factory, "a Dask worker")
    key, media, start, end = job
    return key, _extract(extractor, media, start, end)


_DASK_EXTRACTORS = {}


def _run_on_dask(pending, factory, token: str, cache: FeatureCache, scheduler, bar) -> dict:
    """Per-clip work on a Dask cluster; the results come back here and only this process writes the
    cache, so entries, resume and atomic writes are exactly those of a local run. Returns the
    results not cached, by key."""
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler, timeout="30s")
    uncached = {}
    try:
        futures = [client.submit(_compute, factory, token, job, key=f"{token[:16]}-{job[0]}", pure=False)
                   for job in pending]
        for future in as_completed(futures):
            try:
                key, result = future.result()
            except ExtractorError:
                raise
            except Exception as exc:  # the task's own failure, re-raised here by Dask
                raise WorkerStartError(f"a Dask worker failed ({type(exc).__name__}: {exc})") from exc
            if cacheable(result):
                cache.put(key, result)
            else:
                uncached[key] = result
            bar.update()
        return uncached
    finally:
        if client is not scheduler:
            client.close()


def extract_utterances(manifest, factory, name: str, params: dict, cache_root, workers: int = 1,
                       progress: bool = True, scheduler=None) -> tuple[dict[str, Result], dict]:
    """Results for every manifest row by utterance id, and counts: ``computed`` (clips extracted
    now), ``cached`` (read from the cache), ``missing_file``, ``repaired`` (damaged entries
    computed again: unreadable, non-finite, or a vector unlike the others').

    ``factory()`` builds the extractor in each worker (its ``extract(media, start, end)`` returns
    a :class:`Result` or raises an ``ExtractorError``); with workers it is pickled, so a class or
    a ``functools.partial``, not a lambda. ``scheduler`` (a Dask scheduler address or
    a ``distributed.Client``) runs the clips on that cluster instead of local worker processes;
    its workers read the clips by their absolute paths, so they must see the same files (a worker
    that sees none gives ``missing_file``, which is not cached).
    """
    cache = FeatureCache(cache_root)
    hashes: dict[str, str] = {}
    keys, clips = {}, {}
    for row in manifest.itertuples(index=False):
        if not os.path.isfile(row.media):
            keys[row.utterance_id] = None
            continue
        if row.media not in hashes:
            hashes[row.media] = file_hash(row.media)
        start = None if row.start != row.start else row.start
        end = None if row.end != row.end else row.end
        key = keys[row.utterance_id] = cache_key(hashes[row.media], start, end, name, params)
        # absolute: a worker (a Dask one above all) may run in another folder than this process
        clips.setdefault(key, (key, os.path.abspath(row.media), start, end))   # the same clip twice: once
    pending = [job for key, job in clips.items() if not cache.path(key).is_file()]
    workers = parallel_workers(workers, len(pending))
    uncached = {}
    if pending:
        here = build_extractor(factory)   # a bad setting fails now, before any worker or cluster
        bar = tqdm(total=len(pending), desc=f"{name} features", unit="clip",
                   disable=None if progress else True)  # None: shown on a terminal only
        if scheduler:
            uncached = _run_on_dask(pending, factory, cache_key("", None, None, name, params), cache, scheduler, bar)
        elif workers <= 1:
            _WORKER.update(extractor=here, error=None, cache=cache)
            for job in pending:
                _keep(uncached, _run_one(job))
                bar.update()
        else:
            # forkserver, not fork: workers start from a clean process, never from this one's
            # state (a fork after MediaPipe has run here corrupts the child's heap)
            context = mp.get_context("forkserver")
            # the server imports the extractor's module once; each worker forked from it starts warm
            context.set_forkserver_preload([getattr(factory, "func", factory).__module__])
            # one clip per task: clips differ tenfold in length, and chunks of them left one worker idle
            with context.Pool(workers, _start_worker, (factory, cache_root)) as pool:
                for done in pool.imap_unordered(_run_one, pending):
                    _keep(uncached, done)
                    bar.update()
        bar.close()
    fresh, repaired = {job[0] for job in pending}, set()
    results, damaged = _read(manifest, keys, cache, uncached, fresh)
    while redo := [key for key in damaged if key not in repaired]:   # each once: a redone one is fresh
        for key in redo:   # a torn copy, a disk fault, a foreign file: the cache is only a cache
            print(f"warning: {damaged[key]}; extracting again")
            _init_worker(factory, cache_root)
            _keep(uncached, _run_one(clips[key]))
            repaired.add(key)
        results, damaged = _read(manifest, keys, cache, uncached, fresh | repaired)
    if damaged:   # extracted just now and still unlike the others: the extractor's own doing
        raise ExtractorError(next(iter(damaged.values())))
    counts = {"computed": len(fresh | repaired), "repaired": len(repaired),
              "missing_file": sum(1 for r in results.values() if r.error == "missing_file"),
              "cached": sum(1 for k in keys.values() if k is not None and k not in fresh | repaired)}
    return results, counts


def _keep(uncached: dict, done) -> None:
    key, result = done
    if result is not None:
        uncached[key] = result


def _read(manifest, keys: dict, cache: FeatureCache, uncached: dict, fresh: set) -> tuple[dict, dict]:
    """Each row's Result, and the damaged entries (key: why): unreadable ones, and vectors whose
    width is not the usual one (one config gives one width; np.stack would fail): that of the
    entries extracted in this run (``fresh`` keys) where there are any, else that of most."""
    results, damaged = {}, {}
    for row in manifest.itertuples(index=False):
        key = keys[row.utterance_id]
        if key is None:
            results[row.utterance_id] = Result(None, error="missing_file", message=f"{row.media}: file not found")
        elif key in uncached:
            results[row.utterance_id] = uncached[key]
        else:
            try:
                results[row.utterance_id] = cache.get(key)
            except CorruptEntry as exc:
                damaged[key] = str(exc)
    vectors = {u: r.vector for u, r in results.items() if r.vector is not None}
    widths = (Counter(_width(v) for u, v in vectors.items() if keys[u] in fresh)
              or Counter(map(_width, vectors.values())))
    usual = widths.most_common(1)[0][0] if widths else None
    for utterance, result in results.items():
        if result.vector is not None and _width(result.vector) != usual:
            damaged[keys[utterance]] = (f"{cache.path(keys[utterance])}: damaged cache entry (a vector of shape "
                                        f"{result.vector.shape}; the others' are {usual[1]} wide)")
    return results, damaged


def _width(vector: np.ndarray) -> tuple:
    """(ndim, length of the last axis): a clip's vector, or a recording's rows of one width each."""
    return vector.ndim, (vector.shape[-1] if vector.ndim else None)
