"""Lineage: a small JSON record beside each artifact saying what made it.

``<artifact>.meta.json`` holds the stage, its parameters, the content hashes of its inputs and
the versions of the packages that shaped the result, so a file found alone (or exported)
still says where it came from. ``dvc.lock`` says the same for the pipeline as a whole.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.numerics import settings

PACKAGES = ("numpy", "torch", "torchaudio", "av", "opencv-python-headless", "opensmile", "gensim",
            "scikit-learn", "dvc")


def unreadable_file(path) -> str | None:
    """Why ``path`` is no file to read, in words ('not found', 'is a symbolic link loop' ...),
    or None. ``os.path.isfile`` says False for all of them alike."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return "is a broken symbolic link (its target is missing)" if os.path.islink(path) else "not found"
    return None if os.path.isfile(path) else "is not a file"


def file_hash(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def input_hash(path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return file_hash(path)
    if not path.is_dir():   # a loop or a dangling link would hash as an empty folder
        raise PipelineError(f"{path}: input {unreadable_file(path) or 'is neither a file nor a folder'}")
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode())
        digest.update(file_hash(item).encode())
    return digest.hexdigest()


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def record_path(artifact) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".meta.json")


def write_record(artifact, stage: str, params: dict, inputs=(), extra: dict | None = None) -> Path:
    """Write ``<artifact>.meta.json`` and return its path."""
    record = {
        "artifact": Path(artifact).name,
        "stage": stage,
        "params": params,
        "inputs": {str(p): input_hash(p) for p in inputs},
        "packages": package_versions(),
        "numerics": settings(),   # the kernels' instruction set and threads (pipeline.numerics)
    }
    if extra:
        record.update(extra)
    path = record_path(artifact)
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_json_object(path, what: str, required=()) -> dict:
    """A JSON object file (``what`` it is, for the message); missing, malformed, not an object,
    or without a key of ``required``: an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: {what} {unreadable_file(path) or 'not found'}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:   # JSONDecodeError is a ValueError
        raise PipelineError(f"{path}: not a readable {what} ({exc})") from exc
    if not isinstance(value, dict):
        raise PipelineError(f"{path}: not a {what} (a JSON object), but a {type(value).__name__}")
    missing = [key for key in required if key not in value]
    if missing:
        raise PipelineError(f"{path}: the {what} has no {missing} (written by another version?)")
    return value


def read_record(artifact, *required: str) -> dict:
    """The artifact's record; a missing, unreadable or malformed one, or one without a key of
    ``required``, is an error naming it."""
    return read_json_object(record_path(artifact), "lineage record", required)


def demo_trained(run_dir) -> bool:
    """Whether a run's parts were fitted on the demo corpus alone: its text part's record names
    the datasets it was fitted on (``predict`` and the report say so where they show the run)."""
    from pipeline.artifacts import run_file

    if not record_path(run_file(run_dir, "text")).is_file():
        return False
    try:
        return read_record(run_file(run_dir, "text")).get("datasets") == ["demo"]
    except PipelineError:
        return False
