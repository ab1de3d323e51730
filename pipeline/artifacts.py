"""Where things are, in one table, and how files are written and read safely.

``PATHS`` names every artifact the stages write (the CLI's defaults; ``dvc.yaml`` spells the
same paths and a test holds them equal). A *run folder* (``data/models``) holds ``RUN_FILES``:
one fitted part per modality (``pipeline.parts``) and the model.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline.errors import PipelineError

PATHS = {
    "demo": "data/demo",
    "manifest": "data/manifest.csv",
    "features": "data/features",          # <modality>.npz
    "models": "data/models",              # the run folder: RUN_FILES
    "cache": "data/cache",                # <modality>/ per-utterance entries
    "store": "data/store.npz",
    "coverage": "data/coverage.json",
    "export": "data/export",
    "history": "data/train/history.csv",
    "summary": "data/train/summary.json",
    "eval": "data/eval",
    "report": "data/report/index.html",
    "transcripts": "data/transcripts",    # transcribe: <video>.json, .srt, .vtt
    "shipped": "data/shipped/meld-context",   # ship: the model predict uses without --run
}
RUN_FILES = {"text": "text.pt", "audio": "audio.pt", "visual": "visual.pt", "model": "dimmn.pt"}


def features_path(folder, modality: str) -> Path:
    return Path(folder) / f"{modality}.npz"


def run_file(run_dir, name: str) -> Path:
    return Path(run_dir) / RUN_FILES[name]


def check_writable(*files, folders=()) -> None:
    """Fail before hours of work, not after: the folder of each of ``files`` and each of ``folders``
    is created and must be writable, and no file path may be a folder (a path without a suffix is
    still a file: ``--out predictions`` once made a folder of that name, then failed on it)."""
    for path in files:
        if Path(path).is_dir():
            raise PipelineError(f"{path}: is a folder; name a file to write")
    for folder in [*(Path(p).parent for p in files), *map(Path, folders)]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipelineError(f"{folder}: cannot create the output folder ({exc.strerror})") from exc
        if not os.access(folder, os.W_OK):
            raise PipelineError(f"{folder}: output folder is not writable")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> Path:
    """``write(handle)`` into a temp file beside ``path``, fsync, then rename over it: a reader (or
    a run killed mid-write) sees the old file or the whole new one, never a torn one."""
    path = Path(path)
    if path.is_dir():   # else the rename below fails naming its temp file
        raise PipelineError(f"{path}: is a folder; name a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())   # mkstemp makes it private; outputs are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
