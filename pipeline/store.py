"""The feature store: one row per utterance, a matrix and a presence mask per modality.

Per-modality feature files (``data/features/<modality>.npz``: utterance_id, features, present,
missing_reason) are aligned by utterance id into ``data/store.npz`` with the manifest's
columns: utterance_id, dialogue_id, speaker, split, turn, sentence (the manifest's ``text``:
in the store ``text`` is the text feature matrix), label (class index, -1 unlabelled) and
classes. ``align``, ``import``, ``export``, ``train``, ``evaluate`` and ``predict`` all read
and write it here.
"""
from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from model.data import SPLIT_NAMES, canonical_split, unknown_splits
from pipeline.artifacts import atomic_write
from pipeline.errors import PipelineError
from pipeline.lineage import read_record, record_path, write_record

MODALITIES = ("text", "audio", "visual")
REQUIRED = ("utterance_id", "dialogue_id", "speaker", "split", "turn", "label", "classes")   # "sentence" optional


def label_indices(labels, classes) -> np.ndarray:
    """Class index per label; -1 where the label is empty or not a class."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)


def part_features(part, inputs, present: np.ndarray) -> np.ndarray:
    """A fitted part's features for the present rows (``inputs`` holds those rows only), zeros
    elsewhere: the same assembly for a stage and for ``predict``."""
    matrix = np.zeros((len(present), part.out_dim), np.float32)
    if present.any():
        matrix[present] = part.transform(inputs)
    return matrix


def read_npz(path) -> dict:
    """Every array of an ``.npz`` (store or feature file), no pickles; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise PipelineError(f"{path}: not a readable .npz ({exc})") from exc


def write_npz(path, arrays: dict) -> Path:
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_store(path) -> dict:
    """A store checked for what every reader indexes by: one length for all rows, masks of that
    length, labels within the class list (a bad one is an error naming the store, not an
    IndexError deep in training)."""
    store = read_npz(path)
    missing = [c for c in REQUIRED if c not in store]
    if missing:
        raise PipelineError(f"{path}: not a feature store (missing {missing})")
    check_store(store, path)
    return store


ROW_ARRAYS = ("utterance_id", "dialogue_id", "speaker", "split", "turn", "label", "sentence")


def check_store(store: dict, path) -> None:
    rows = len(store["utterance_id"])
    for name in [c for c in ROW_ARRAYS if c in store] + [f"{m}_present" for m in MODALITIES if f"{m}_present" in store]:
        if store[name].shape != (rows,):
            raise PipelineError(f"{path}: {name} has shape {store[name].shape}, but the store has {rows} rows")
    for m in (m for m in MODALITIES if m in store):
        if store[m].ndim != 2 or len(store[m]) != rows:
            raise PipelineError(f"{path}: the {m} matrix has shape {store[m].shape}, but the store has {rows} rows")
        if store[m].shape[1] == 0:   # a model would read nothing from it, and train without a word
            raise PipelineError(f"{path}: the {m} matrix has no columns (shape {store[m].shape}); make it again, or "
                                f"leave {m} out of the store")
        mask = store.get(f"{m}_present")
        if mask is not None and not (mask.dtype == bool or (mask.dtype.kind in "iu" and np.isin(mask, (0, 1)).all())):
            raise PipelineError(f"{path}: {m}_present must be true/false per row, not {mask.dtype} values")
    _check_labels(store["label"], store["classes"], path)
    _check_splits(store, path)
    zero_absent_rows(store, path)
    for m in (m for m in MODALITIES if m in store and f"{m}_present" in store):
        check_finite(store[m], store[f"{m}_present"], store["utterance_id"], path, m)
    check_unique_ids(store["utterance_id"], path)


def check_finite(matrix, present, ids, path, modality: str) -> None:
    """A row marked present must hold numbers: NaN would be read as features (evaluate's argmax of
    NaN is the first class; train stops on it), so it is an error naming the file that holds it."""
    bad = np.asarray(present, bool) & ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise PipelineError(f"{path}: {int(bad.sum())} row(s) marked present hold non-finite {modality} values "
                            f"(e.g. {str(np.asarray(ids)[np.flatnonzero(bad)[0]])!r}); the file is damaged: "
                            f"make it again")


def zero_absent_rows(store: dict, path) -> dict:
    """A row marked absent holds zeros (align writes them so): its values are never used, but a NaN
    there would survive the zero mask (NaN * 0 is NaN). A store made elsewhere may mark missing
    rows with NaN: those rows are read as zeros, and the count is said. Returns {modality: count}."""
    zeroed = {}
    for m in MODALITIES:
        mask = store.get(f"{m}_present")
        if m not in store or mask is None:
            continue
        bad = ~np.asarray(mask, bool) & ~np.isfinite(store[m]).all(axis=1)
        if bad.any():
            matrix = np.array(store[m], copy=True)
            matrix[bad] = 0
            store[m], zeroed[m] = matrix, int(bad.sum())
            print(f"{path}: {zeroed[m]} {m} row(s) marked absent held non-finite values; read as zeros (an absent "
                  f"row's values are never used)")
    return zeroed


def check_unique_ids(ids, path) -> None:
    """One row per utterance: a repeated id is an error naming the file and a few of the ids (by id,
    align would keep the last row, and export, evaluate and predict would count it twice)."""
    ids = np.asarray(ids).astype(str)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        shown = [str(u) for u in ids[np.isin(ids, repeated)]]
        shown = list(dict.fromkeys(shown))[:5]   # in file order
        raise PipelineError(f"{path}: {len(repeated)} utterance id(s) on more than one row, e.g. {shown}; each "
                            f"row must be one utterance with its own id")


def _check_splits(store: dict, path) -> None:
    """Split names read as a manifest's are (``dev`` is ``valid``); an unknown one is an error: its
    rows would be in no split, trained and evaluated on by nobody, without a word."""
    found = unknown_splits(store["split"])
    if found:
        rows = int(np.isin(store["split"].astype(str), found).sum())
        raise PipelineError(f"{path}: split holds unknown name(s) {found[:5]} ({rows} rows); expected one of "
                            f"{SPLIT_NAMES}")
    store["split"] = np.asarray([canonical_split(s) for s in store["split"]], dtype=str)


def _check_labels(label: np.ndarray, classes: np.ndarray, path) -> None:
    if classes.ndim != 1:
        raise PipelineError(f"{path}: classes must be a list of names, not an array of shape {classes.shape}")
    if label.dtype.kind not in "iu":
        raise PipelineError(f"{path}: label must hold class indices (integers), not {label.dtype} values")
    bad = np.flatnonzero((label < -1) | (label >= len(classes)))
    if len(bad):
        raise PipelineError(f"{path}: row {bad[0]} has label index {label[bad[0]]}, but there are {len(classes)} "
                            f"classes (0..{len(classes) - 1}; -1: unlabelled)")


def save_store(store: dict, path, stage: str, params: dict, inputs=(), extra=None) -> None:
    check_store(store, path)   # what every reader will check, before the file exists
    write_npz(path, store)
    write_record(path, stage, params, inputs, extra={"classes": [str(c) for c in store["classes"]], **(extra or {})})


def save_features(path, ids, matrix, present, reasons, stage: str, params: dict, inputs=(), extra=None):
    write_npz(path, {"utterance_id": np.asarray(ids, dtype=str), "features": matrix.astype(np.float32),
                     "present": np.asarray(present, bool), "missing_reason": np.asarray(reasons, dtype=str)})
    write_record(path, stage, params, inputs, extra)


def store_columns(manifest: pd.DataFrame, classes: list[str]) -> dict:
    return {
        "utterance_id": np.asarray(manifest["utterance_id"], dtype=str),
        "dialogue_id": np.asarray(manifest["dialogue_id"], dtype=str),
        "speaker": np.asarray(manifest["speaker"], dtype=str),
        "split": np.asarray(manifest["split"], dtype=str),
        "turn": manifest["turn"].astype(int).to_numpy(),
        "sentence": np.asarray(manifest["text"].fillna(""), dtype=str),
        "label": label_indices(manifest["label"], classes),
        "classes": np.asarray(classes, dtype=str),
    }


def align(manifest: pd.DataFrame, classes: list[str], feature_paths: dict, out, report_path, params=None):
    """One store aligned to the manifest by utterance id, masks per modality, coverage report."""
    store = store_columns(manifest, classes)
    report = {"utterances": int(len(manifest)), "dialogues": int(manifest["dialogue_id"].nunique()),
              "modalities": {}}
    position = {u: i for i, u in enumerate(store["utterance_id"])}
    for modality, path in feature_paths.items():
        feats = read_npz(path)
        check_unique_ids(feats["utterance_id"], path)
        check_finite(feats["features"], feats["present"], feats["utterance_id"], path, modality)
        matrix = np.zeros((len(manifest), feats["features"].shape[1]), np.float32)
        present = np.zeros(len(manifest), bool)
        reasons = np.full(len(manifest), "not_extracted", dtype=object)
        for row, uid in enumerate(feats["utterance_id"]):
            if uid in position:
                i = position[uid]
                matrix[i], present[i], reasons[i] = feats["features"][row], feats["present"][row], \
                    feats["missing_reason"][row]
        store[modality], store[f"{modality}_present"] = matrix, present
        report["modalities"][modality] = coverage(matrix, present, reasons)
        record = read_record(path) if record_path(path).is_file() else {}
        for key in ("frames", "face_frames", "clips_without_face"):
            if key in record:
                report["modalities"][modality][key] = record[key]
    save_store(store, out, "align", params or {}, inputs=list(feature_paths.values()))
    atomic_write(report_path, lambda handle: handle.write((json.dumps(report, indent=2) + "\n").encode()))
    return store, report


def coverage(matrix: np.ndarray, present: np.ndarray, reasons) -> dict:
    shown = matrix[present]
    return {
        "dim": int(matrix.shape[1]), "present": int(present.sum()), "missing": int((~present).sum()),
        "missing_by_reason": dict(Counter(str(r) for r, p in zip(reasons, present) if not p)),
        "finite": bool(np.isfinite(matrix).all()),
        "mean": float(shown.mean()) if shown.size else 0.0, "std": float(shown.std()) if shown.size else 0.0,
        "max_abs": float(np.abs(shown).max()) if shown.size else 0.0,
        "mean_l2_norm": float(np.linalg.norm(shown, axis=1).mean()) if shown.size else 0.0,
    }
