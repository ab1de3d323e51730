"""Label a new conversation with a trained run, without retraining anything.

A run is the folder of trained parts the pipeline writes (``data/models``): the text CNN
(``text_cnn.pt``), the fitted audio and visual reducers (``audio.pkl``, ``visual.pkl``) and the
model (``dimmn.pt``), each with its ``.meta.json`` record. The conversation is a folder of clips
plus a CSV with ``turn``, ``speaker``, ``text`` and ``media`` (and optional ``utterance_id``,
``start``, ``end``). Feature settings that differ from the run's are refused: features made
another way would not mean what the model learned.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from extractors.text import TextFeaturizer
from extractors.visual import Small3DCNN
from model.train import load_checkpoint, pick_device, predict
from pipeline.cache import extract_utterances
from pipeline.features import MEDIA, split_config
from pipeline.lineage import read_record
from pipeline.manifest import ManifestError

STAGE_ONLY = {"workers"}   # settings that do not change what a feature means


class PredictError(ValueError):
    pass


def read_conversation(folder, csv) -> pd.DataFrame:
    folder, csv = Path(folder), Path(csv)
    if not csv.is_file():
        raise ManifestError(f"{csv}: conversation CSV not found")
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in ("speaker", "media") if c not in frame.columns]
    if missing:
        raise ManifestError(f"{csv}: missing column(s) {missing}; need turn, speaker, text, media")
    frame["turn"] = frame["turn"].astype(int) if "turn" in frame.columns else range(len(frame))
    frame = frame.sort_values("turn", kind="stable").reset_index(drop=True)
    for column, default in (("text", ""), ("start", ""), ("end", "")):
        if column not in frame.columns:
            frame[column] = default
    if "utterance_id" not in frame.columns:
        frame["utterance_id"] = [Path(m).stem for m in frame["media"]]
    frame["media"] = [str(folder / m) for m in frame["media"]]
    for line, media in enumerate(frame["media"], start=2):
        if not Path(media).is_file():
            raise ManifestError(f"{csv}: line {line}: media file {media!r} not found")
    for column in ("start", "end"):
        frame[column] = pd.to_numeric(frame[column].where(frame[column] != ""), errors="coerce")
    frame["dialogue_id"], frame["split"], frame["label"] = "conversation", "test", ""
    return frame


def check_settings(run: Path, params: dict, modalities) -> None:
    """Refuse when this conversation's feature settings (``params``) differ from the run's."""
    problems = []
    for modality in modalities:
        artifact = run / ("text_cnn.pt" if modality == "text" else f"{modality}.pkl")
        recorded = read_record(artifact)["params"]
        current = params.get(modality, {})
        for key in sorted((set(recorded) | set(current)) - STAGE_ONLY):
            if key in current and key in recorded and current[key] != recorded[key]:
                problems.append(f"{modality}.{key} is {current[key]!r} here but {recorded[key]!r} in the run")
    if problems:
        raise PredictError("feature settings differ from the trained run's, so its model cannot read these "
                           "features: " + "; ".join(problems) + ". Use the run's params, or retrain (dvc repro).")


def _load_media_part(path: Path):
    if zipfile.is_zipfile(path):  # a trained network (torch.save)
        return torch.load(path, map_location="cpu", weights_only=False)
    with open(path, "rb") as handle:  # our own fitted reducer, written by the visual/audio stage
        return pickle.load(handle)


def featurise(conversation: pd.DataFrame, run: Path, modalities, cache_root, workers: int = 1) -> dict:
    store = {"utterance_id": conversation["utterance_id"].to_numpy().astype(str),
             "dialogue_id": conversation["dialogue_id"].to_numpy().astype(str),
             "turn": conversation["turn"].to_numpy(), "speaker": conversation["speaker"].to_numpy().astype(str),
             "split": conversation["split"].to_numpy().astype(str), "label": np.full(len(conversation), -1)}
    for modality in modalities:
        if modality == "text":
            featurizer = TextFeaturizer.load(run / "text_cnn.pt")
            texts = conversation["text"].astype(str).tolist()
            present = np.array([bool(t.strip()) for t in texts])
            store["text"], store["text_present"] = featurizer.features(texts) * present[:, None], present
            continue
        part = _load_media_part(run / f"{modality}.pkl")
        config_cls, extractor_cls = MEDIA[modality]
        config, _ = split_config(config_cls, part["config"])
        results, _ = extract_utterances(conversation, lambda: extractor_cls(config), modality, asdict(config),
                                        Path(cache_root) / modality, workers=workers, progress=False)
        ids = store["utterance_id"]
        present = np.array([results[u].vector is not None for u in ids])
        raw = np.stack([results[u].vector for u in ids if results[u].vector is not None]) if present.any() else None
        if "reducer" in part:
            dim = part["reducer"].transform(raw[:1]).shape[1] if raw is not None else 1
            reduced = part["reducer"].transform(raw) if raw is not None else np.zeros((0, dim), np.float32)
        else:
            net = Small3DCNN(part["dim"], len(part["classes"]), config.clip_frames, config.clip_size)
            net.load_state_dict(part["state"])
            with torch.no_grad():
                reduced = net.eval().features(torch.from_numpy(raw)).numpy() if raw is not None else np.zeros((0, part["dim"]))
        matrix = np.zeros((len(ids), reduced.shape[1]), np.float32)
        matrix[present] = reduced
        store[modality], store[f"{modality}_present"] = matrix, present
    return store


def predict_conversation(run, folder, csv, params: dict, cache_root="data/cache", checkpoint=None) -> pd.DataFrame:
    run = Path(run)
    device = pick_device("auto")
    model, blob = load_checkpoint(checkpoint or run / "dimmn.pt", device)
    check_settings(run, params, model.modalities)
    conversation = read_conversation(folder, csv)
    store = featurise(conversation, run, model.modalities, cache_root)
    rows, probs = predict(model, store, np.ones(len(conversation), bool), device)
    order = np.argsort(rows)
    rows, probs = rows[order], probs[order]
    classes = blob["classes"]
    out = conversation.loc[rows, ["utterance_id", "turn", "speaker", "text"]].reset_index(drop=True)
    out["predicted"] = [classes[i] for i in probs.argmax(1)]
    for j, name in enumerate(classes):
        out[f"p_{name}"] = probs[:, j].round(4)
    for modality in model.modalities:
        out[f"{modality}_present"] = store[f"{modality}_present"][rows]
    return out
