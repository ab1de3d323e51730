"""Where things are, in one table, and how files are written and read safely.

``PATHS`` names every artifact the stages write (the CLI's defaults; ``dvc.yaml`` spells the
same paths and a test holds them equal). A *run folder* (``data/models``) holds ``RUN_FILES``:
one fitted part per modality (``pipeline.parts``) and the model.
"""
from __future__ import annotations

import json
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


def check_writable(*files, folders=(), inputs=(), stage=None, unrecorded=(), owner=None) -> None:
    """Fail before hours of work, not after, and never write over what is not the command's own.

    Every command checks its outputs here, once, before any work: ``files`` (outputs that get a
    ``.meta.json`` record), ``unrecorded`` (outputs written without one) and ``folders``.

    - No two outputs may be one file, and no output may be one of the command's ``inputs`` (the
      same file by any path: a link, a hard link), nor an existing file inside an input folder
      that is not this ``stage``'s own output (``ingest --root D --out D/clip.mp4``).
    - No output may be a file another stage made (its record names that stage), and where
      ``stage`` is given, an existing file among ``files`` must carry its record: one without is
      a user's file, not an earlier run's output.
    - ``owner`` (one of ``files``): the unrecorded outputs are this command's own only beside an
      owner that carries this ``stage``'s record; an existing one beside an owner without it is a
      user's file (``predict --out talk.csv`` beside a talk.html of one's own).
    - The folder of each output and each of ``folders`` is created and must be writable, and no
      file path may be a folder (a path without a suffix is still a file: ``--out predictions``
      once made a folder of that name, then failed on it)."""
    outputs = [Path(p) for p in (*files, *unrecorded)]
    for path in outputs:
        if path.is_dir():
            raise PipelineError(f"{path}: is a folder; name a file to write")
    seen = {}
    for path in outputs:   # two outputs on one path: the second would replace the first
        if _resolved(path) in seen:
            raise PipelineError(f"{path}: named for two outputs (also as {seen[_resolved(path)]}); name each its "
                                f"own file")
        seen[_resolved(path)] = path
    given = [Path(p) for p in inputs if p is not None and str(p) != ""]
    for path in outputs:
        for source in given:
            if _same_file(path, source):
                raise PipelineError(f"{path}: is an input of this command ({source}); writing there would destroy "
                                    f"it: name another output")
    recorded = {_resolved(p) for p in files}
    for path in outputs:
        if not path.is_file():
            continue
        maker = recorded_stage(path)
        inside = next((s for s in given if s.is_dir() and _resolved(s) in _resolved(path).parents), None)
        if inside is not None and (maker is None or maker != stage):
            raise PipelineError(f"{path}: is a file of the input folder {inside}; writing there would replace it: "
                                f"name another output")
        if maker is not None and maker != stage:
            raise PipelineError(f"{path}: is the {maker} stage's output (its record says so), not {stage or 'this'} "
                                f"command's: name another output")
        if maker is None and stage is not None and _resolved(path) in recorded:
            raise PipelineError(f"{path}: exists and was not written by {stage} (no {stage} record beside it): a "
                                f"file of yours? Name another output, or remove it first")
    if owner is not None and recorded_stage(owner) != stage:
        for path in map(Path, unrecorded):
            if path.is_file():
                raise PipelineError(f"{path}: exists and was not written by {stage} (no {stage} record beside "
                                    f"{Path(owner).name}): a file of yours? Name another output, or remove it first")
    for folder in [*(p.parent for p in outputs), *map(Path, folders)]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipelineError(f"{folder}: cannot create the output folder ({exc.strerror})") from exc
        if not os.access(folder, os.W_OK):
            raise PipelineError(f"{folder}: output folder is not writable")


def _resolved(path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return a.exists() and b.is_file() and os.path.samefile(a, b)
    except OSError:
        return False


def recorded_stage(path) -> str | None:
    """The stage that the record beside ``path`` names, or None where it has no readable record."""
    from pipeline.lineage import record_path

    try:
        stage = json.loads(record_path(path).read_text(encoding="utf-8")).get("stage")
    except (OSError, ValueError, AttributeError):
        return None
    return stage if isinstance(stage, str) else None


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
