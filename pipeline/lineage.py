"""Lineage: a small JSON record beside each artifact saying what made it.

``<artifact>.meta.json`` holds the stage, its parameters, the content hashes of its inputs and
the versions of the packages that shaped the result, so a file found alone (or exported)
still says where it came from. ``dvc.lock`` says the same for the pipeline as a whole.
"""
from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "torch", "torchaudio", "av", "opencv-python-headless", "opensmile", "gensim",
            "scikit-learn", "dvc")


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
    }
    if extra:
        record.update(extra)
    path = record_path(artifact)
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_record(artifact) -> dict:
    return json.loads(record_path(artifact).read_text())
