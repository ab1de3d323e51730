"""The extraction stages: text, audio and visual features per utterance, and their alignment.

Each modality stage writes ``<out>.npz`` (utterance_id, features, present, missing_reason) with a
lineage record, and its fitted parts (reducer, trained network) under ``models``, so new clips
can be featurised later without refitting.
"""
from __future__ import annotations

import json
import pickle
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from extractors.audio import AudioConfig, AudioExtractor
from extractors.fit import class_indices, fit_classifier, pick_device, predict_batches
from extractors.reduce import Reducer
from extractors.text import TextConfig, TextFeaturizer, tokenize, train_text_cnn
from extractors.visual import TRAINED_BACKBONES, Small3DCNN, VisualConfig, VisualExtractor
from model.data import holdout_valid
from pipeline.cache import extract_utterances
from pipeline.lineage import read_record, record_path, write_record

MODALITIES = ("text", "audio", "visual")


def split_config(cls, params: dict):
    """An extractor's own dataclass from a params section, and the stage-level rest."""
    names = {f.name for f in fields(cls)}
    own = {k: v for k, v in params.items() if k in names}
    if "widths" in own:
        own["widths"] = tuple(own["widths"])
    return cls(**own), {k: v for k, v in params.items() if k not in names}


def save_features(path, ids, matrix, present, reasons, stage: str, params: dict, inputs=(), extra=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, utterance_id=np.asarray(ids, dtype=str), features=matrix.astype(np.float32),
             present=np.asarray(present, bool), missing_reason=np.asarray(reasons, dtype=str))
    write_record(path, stage, params, inputs, extra)


def load_features(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def training_parts(manifest: pd.DataFrame, seed: int = 0, valid_share: float = 0.1):
    """Boolean masks (train, valid); see ``model.data.holdout_valid``."""
    return holdout_valid(manifest["split"].to_numpy(), manifest["dialogue_id"].to_numpy(), seed, valid_share)


def text_stage(manifest: pd.DataFrame, classes: list[str], params: dict, out, model_path):
    config, _ = split_config(TextConfig, params)
    texts = manifest["text"].fillna("").astype(str).tolist()
    present = np.array([len(tokenize(t)) > 0 for t in texts])
    train, valid = training_parts(manifest, config.seed)
    labelled = manifest["label"].isin(classes).to_numpy()
    fit_rows, check_rows = train & present & labelled, valid & present & labelled
    y = np.full(len(manifest), -1)
    y[labelled] = class_indices(manifest.loc[labelled, "label"], classes)
    featurizer, info = train_text_cnn([texts[i] for i in np.flatnonzero(fit_rows)], y[fit_rows],
                                      [texts[i] for i in np.flatnonzero(check_rows)], y[check_rows],
                                      classes, config)
    Path(model_path).parent.mkdir(parents=True, exist_ok=True)
    featurizer.save(model_path)
    write_record(model_path, "text", params, extra={"classes": classes, **info})
    matrix = np.zeros((len(manifest), config.out_dim), np.float32)
    matrix[present] = featurizer.features([texts[i] for i in np.flatnonzero(present)])
    reasons = np.where(present, "", "empty_text")
    save_features(out, manifest["utterance_id"], matrix, present, reasons, "text", params,
                  extra={"vocab_size": info["vocab_size"], "vectors_coverage": info["vectors_coverage"],
                         "epochs_run": len(info["history"])})
    return matrix, present


MEDIA = {
    "audio": (AudioConfig, AudioExtractor),
    "visual": (VisualConfig, VisualExtractor),
}


def media_stage(modality: str, manifest: pd.DataFrame, classes: list[str], params: dict, out,
                model_path, cache_root, progress: bool = True):
    """Per-clip extraction through the cache, then a reduction (or network) fitted on train."""
    config_cls, extractor_cls = MEDIA[modality]
    config, stage = split_config(config_cls, params)
    results, computed = extract_utterances(manifest, lambda: extractor_cls(config), modality, asdict(config),
                                           Path(cache_root) / modality, workers=int(stage.get("workers", 1)),
                                           progress=progress)
    ids = manifest["utterance_id"].tolist()
    present = np.array([results[u].vector is not None for u in ids])
    reasons = np.array([results[u].error or "" if results[u].vector is None else "" for u in ids])
    if not present.any():
        raise ValueError(f"{modality}: no clip gave features ({Counter(reasons)})")
    raw = np.stack([results[u].vector for u in ids if results[u].vector is not None])
    train, valid = training_parts(manifest, int(stage.get("seed", 0)))
    labelled = manifest["label"].isin(classes).to_numpy()
    y = np.full(len(manifest), -1)
    y[labelled] = class_indices(manifest.loc[labelled, "label"], classes)
    rows = np.flatnonzero(present)
    fit_rows = np.isin(rows, np.flatnonzero(train & labelled))
    dim = int(stage.get("dim", 100))
    if getattr(config, "backbone", None) in TRAINED_BACKBONES:
        reduced = _train_cnn3d(raw, y[rows], fit_rows, np.isin(rows, np.flatnonzero(valid & labelled)),
                               classes, config, stage, dim, model_path)
    else:
        reducer = Reducer(stage.get("reduction", "pca"), dim, int(stage.get("seed", 0)))
        reducer.fit(raw[fit_rows], y[rows][fit_rows])
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
        with open(model_path, "wb") as handle:
            pickle.dump({"config": asdict(config), "reducer": reducer}, handle)
        write_record(model_path, modality, params)
        reduced = reducer.transform(raw)
    matrix = np.zeros((len(manifest), reduced.shape[1]), np.float32)
    matrix[present] = reduced
    infos = [results[u].info for u in ids]
    extra = {"computed": computed, "cached": len(ids) - computed, "raw_dim": int(raw.shape[1]),
             "missing": dict(Counter(r for r in reasons if r))}
    if modality == "visual":
        extra["frames"] = int(sum(i.get("frames", 0) for i in infos))
        extra["face_frames"] = int(sum(i.get("face_frames", 0) for i in infos))
        extra["clips_without_face"] = int(sum(1 for i in infos if i.get("frames") and not i.get("face_frames")))
    save_features(out, ids, matrix, present, reasons, modality, params, extra=extra)
    return matrix, present, extra


def _train_cnn3d(raw, y, fit_rows, valid_rows, classes, config, stage, dim, model_path):
    x = torch.from_numpy(raw)
    model = Small3DCNN(dim, len(classes), config.clip_frames, config.clip_size)
    seed = int(stage.get("seed", 0))
    model, history = fit_classifier(model, x[fit_rows], y[fit_rows], x[valid_rows], y[valid_rows],
                                    epochs=int(stage.get("epochs", 30)), lr=float(stage.get("lr", 1e-3)),
                                    batch_size=32, patience=int(stage.get("patience", 5)), seed=seed,
                                    device=pick_device(stage.get("device", "auto")), desc="3D-CNN")
    Path(model_path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(config), "state": model.state_dict(), "dim": dim, "classes": classes}, model_path)
    write_record(model_path, "visual", stage, extra={"history": history})
    device = next(model.parameters()).device
    return predict_batches(model.features, x, 256, device).numpy()


def align(manifest: pd.DataFrame, classes: list[str], feature_paths: dict, out, report_path, params=None):
    """One store aligned to the manifest by utterance id, masks per modality, coverage report."""
    store = {
        "utterance_id": np.asarray(manifest["utterance_id"], dtype=str),
        "dialogue_id": np.asarray(manifest["dialogue_id"], dtype=str),
        "speaker": np.asarray(manifest["speaker"], dtype=str),
        "split": np.asarray(manifest["split"], dtype=str),
        "turn": manifest["turn"].astype(int).to_numpy(),
        "sentence": np.asarray(manifest["text"].fillna(""), dtype=str),  # "text" is the feature matrix
        "label": np.array([classes.index(l) if l in classes else -1 for l in manifest["label"]]),
        "classes": np.asarray(classes, dtype=str),
    }
    report = {"utterances": int(len(manifest)), "dialogues": int(manifest["dialogue_id"].nunique()),
              "modalities": {}}
    position = {u: i for i, u in enumerate(store["utterance_id"])}
    for modality, path in feature_paths.items():
        feats = load_features(path)
        matrix = np.zeros((len(manifest), feats["features"].shape[1]), np.float32)
        present = np.zeros(len(manifest), bool)
        reasons = np.full(len(manifest), "not_extracted", dtype=object)
        for row, uid in enumerate(feats["utterance_id"]):
            if uid in position:
                i = position[uid]
                matrix[i], present[i], reasons[i] = feats["features"][row], feats["present"][row], \
                    feats["missing_reason"][row]
        store[modality], store[f"{modality}_present"] = matrix, present
        shown = matrix[present]
        report["modalities"][modality] = {
            "dim": int(matrix.shape[1]), "present": int(present.sum()), "missing": int((~present).sum()),
            "missing_by_reason": dict(Counter(str(r) for r, p in zip(reasons, present) if not p)),
            "finite": bool(np.isfinite(matrix).all()),
            "mean": float(shown.mean()) if shown.size else 0.0, "std": float(shown.std()) if shown.size else 0.0,
            "mean_l2_norm": float(np.linalg.norm(shown, axis=1).mean()) if shown.size else 0.0,
        }
        record = read_record(path) if record_path(path).is_file() else {}
        for key in ("frames", "face_frames", "clips_without_face"):
            if key in record:
                report["modalities"][modality][key] = record[key]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **store)
    Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
    write_record(out, "align", params or {}, inputs=list(feature_paths.values()), extra={"classes": classes})
    return store, report


def load_store(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
