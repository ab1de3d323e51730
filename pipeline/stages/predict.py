"""Label a new conversation with a trained run, without retraining anything.

A run is the folder of trained parts the pipeline writes (``data/models``, names in
``pipeline.artifacts.RUN_FILES``): one fitted part per modality and the model, each with its
``.meta.json`` record. The conversation is a folder of clips plus a CSV with ``turn``,
``speaker``, ``text`` and ``media`` (and optional ``utterance_id``, ``start``, ``end``).
Feature settings that differ from the run's are refused: features made another way would not
mean what the model learned. Loading the run executes no code from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from model.train import load_checkpoint, pick_device, predict_probs
from pipeline.artifacts import RUN_FILES, check_writable, run_file
from pipeline.parts import load_part
from pipeline.errors import PipelineError
from pipeline.lineage import read_record, record_path
from pipeline.manifest import ManifestError, read_csv_any_encoding, validate
from pipeline.params import configs, load_params
from pipeline.report import write_page
from extractors.registry import media_extractor
from pipeline.stages.media import STAGE_ONLY, extract_raw
from pipeline.stages.text import text_inputs
from pipeline.store import part_features, store_columns


class PredictError(PipelineError):
    pass


def read_conversation(folder, csv) -> pd.DataFrame:
    """The conversation as manifest rows (split ``test``, no labels), checked like a manifest."""
    folder, csv = Path(folder), Path(csv)
    frame = read_csv_any_encoding(csv)
    missing = [c for c in ("speaker", "media") if c not in frame.columns]
    if missing:
        raise ManifestError(f"{csv}: missing column(s) {missing}; need turn, speaker, text, media")
    if "turn" not in frame.columns:
        frame["turn"] = [str(i) for i in range(len(frame))]
    for column in ("text", "start", "end"):
        if column not in frame.columns:
            frame[column] = ""
    if "utterance_id" not in frame.columns:   # the clip's name, made unique where one clip gives several
        stems = pd.Series([Path(m).stem for m in frame["media"]])
        frame["utterance_id"] = np.where(stems.duplicated(keep=False), stems + "_" + frame["turn"].astype(str), stems)
    frame["media"] = [str(folder / m) if m else "" for m in frame["media"]]
    frame["dataset"], frame["dialogue_id"], frame["split"], frame["label"] = "conversation", "conversation", "test", ""
    for index, turn in frame["turn"].items():
        if not str(turn).strip().lstrip("-").isdigit():
            raise ManifestError(f"{csv}: line {index + 2}: turn {turn!r} is not an integer")
    return validate(frame, csv)


def check_settings(run: Path, params: dict, modalities) -> None:
    """Refuse when this conversation's feature settings (``params``) differ from the run's."""
    problems = []
    for modality in modalities:
        artifact = run_file(run, modality)
        if not record_path(artifact).is_file():
            raise PredictError(f"{record_path(artifact)}: the run's record of its {modality} part is missing")
        recorded = read_record(artifact)["params"]
        current = params.get(modality) or {}
        for key in sorted((set(recorded) | set(current)) - STAGE_ONLY):
            if key in current and key in recorded and current[key] != recorded[key]:
                problems.append(f"{modality}.{key} is {current[key]!r} here but {recorded[key]!r} in the run")
    if problems:
        raise PredictError("feature settings differ from the trained run's, so its model cannot read these "
                           "features: " + "; ".join(problems) + ". Use the run's params, or retrain (dvc repro).")


def featurise(conversation: pd.DataFrame, run: Path, modalities, dims: dict, classes, cache_root,
              workers: int = 1) -> dict:
    """The conversation as a store, each modality through the run's fitted part (as its stage did)."""
    store = store_columns(conversation, classes)
    for modality in modalities:
        part = load_part(run_file(run, modality))
        if part.out_dim != dims[modality]:
            raise PredictError(f"{run_file(run, modality)}: gives {part.out_dim}-d {modality} features but the "
                               f"model reads {dims[modality]}-d: the part comes from another run")
        if modality == "text":
            texts, present = text_inputs(conversation)
            inputs = [texts[i] for i in np.flatnonzero(present)]
        else:
            record = read_record(run_file(run, modality))
            config = configs(modality, record["extractor"], media_extractor(modality)[0])
            inputs, present, _, _, _ = extract_raw(modality, conversation, config, cache_root, workers, progress=False)
        store[modality], store[f"{modality}_present"] = part_features(part, inputs, present), present
    return store


def subtitled_conversation(video, subtitles) -> pd.DataFrame:
    """A recording and its subtitles as the conversation's rows (one utterance per cue)."""
    from pipeline.subtitles import conversation

    if not Path(video).is_file():
        raise PredictError(f"{video}: video not found")
    frame, counts = conversation(video, subtitles)
    if counts:
        print(f"predict: {subtitles}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))
    return validate(frame, subtitles)


def predict_conversation(run, conversation: pd.DataFrame, params: dict, cache_root="data/cache"):
    """(per-utterance table, the conversation's store, the model, its checkpoint blob)."""
    run = Path(run)
    if not run.is_dir():
        raise PredictError(f"{run}: run folder not found (it holds {sorted(RUN_FILES.values())})")
    device = pick_device("auto")
    model, blob = load_checkpoint(run_file(run, "model"), device)
    check_settings(run, params, model.modalities)
    store = featurise(conversation, run, model.modalities, blob["dims"], blob["classes"], cache_root)
    rows, probs = predict_probs(model, store, np.ones(len(conversation), bool), device)
    order = np.argsort(rows)
    rows, probs = rows[order], probs[order]
    classes = blob["classes"]
    columns = ["utterance_id", "turn", "speaker", "start", "end", "text"]
    out = conversation.loc[rows, columns].reset_index(drop=True)
    out["predicted"] = [classes[i] for i in probs.argmax(1)]
    for j, name in enumerate(classes):
        out[f"p_{name}"] = probs[:, j].round(4)
    for modality in model.modalities:
        out[f"{modality}_present"] = store[f"{modality}_present"][rows]
    return out, store, model, blob


def conversation_page(store: dict, model, blob: dict, title: str) -> str:
    """The report's dialogue view for a new conversation: predictions and attention, no metrics."""
    from model.explain import explain
    from pipeline.report import build_page, dialogue_browser

    explained = explain(model, store, np.ones(len(store["label"]), bool), next(model.parameters()).device)
    browser = dialogue_browser(explained, store, list(blob["classes"]))
    note = ("<p>Each utterance's predicted emotion and probability; the multiview attention (how much each "
            "modality weighed, per view) and the memory attention over the conversation's other utterances.</p>")
    return build_page("Emotions in a conversation", title, [("Conversation", note + browser)])


def run(run_dir, out, params_path, cache_root, clips=None, csv=None, video=None, subtitles=None):
    if bool(video) != bool(subtitles) or bool(clips) != bool(csv) or bool(video) == bool(clips):
        raise PredictError("give --clips and --csv (a folder of clips and its CSV), or --video and --subtitles")
    check_writable(out)
    conversation = subtitled_conversation(video, subtitles) if video else read_conversation(clips, csv)
    table, store, model, blob = predict_conversation(run_dir, conversation, load_params(params_path), cache_root)
    table.to_csv(out, index=False)
    page = Path(out).with_suffix(".html")
    write_page(page, conversation_page(store, model, blob, f"{video or csv} · run {run_dir}"))
    probs = [c for c in table.columns if c.startswith("p_")]
    shown = table[["turn", "speaker", "utterance_id", "predicted"] + probs]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"predict: {len(table)} utterances -> {out}, {page}")
    return table
