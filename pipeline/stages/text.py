"""Text features: the Kim CNN trained on the training transcripts; its 100-d layer per utterance."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from extractors.sentence import SentenceConfig, SentenceEncoder, finetune_encoder
from extractors.text import TextConfig, has_words, train_text_cnn
from model.data import no_valid_rows_reason
from pipeline.artifacts import check_writable
from pipeline.parts import save_part
from pipeline.lineage import write_record
from pipeline.manifest import read_manifest, require_training_split, training_parts
from pipeline.errors import ParamsError, PipelineError
from pipeline.crossfit import CrossFitting, check_cross_fitting, content_key, cross_fit
from pipeline.numerics import settings
from pipeline.params import configs, params_file, section
from pipeline.store import label_indices, part_features, save_features


def text_inputs(frame: pd.DataFrame, context_turns: int = 0) -> tuple[list[str], np.ndarray]:
    """Every row's text, and which rows have words (others are masked as ``empty_text``). With
    ``context_turns``, a row's input is "speaker: its text [SEP] speaker: the turn before [SEP] ..."
    over up to that many earlier turns of its dialogue, newest first: truncation to
    ``max_tokens`` then drops the oldest context, never the utterance itself."""
    texts = frame["text"].fillna("").astype(str).tolist()
    present = np.array([has_words(t) for t in texts], dtype=bool)
    if not context_turns:
        return texts, present
    speakers = frame["speaker"].fillna("").astype(str).tolist()
    said = [f"{who}: {text}" if who else text for who, text in zip(speakers, texts)]
    inputs = list(texts)
    order = frame.assign(_row=np.arange(len(frame))).sort_values(["dialogue_id", "turn", "_row"], kind="stable")
    for _, rows in order.groupby("dialogue_id", sort=False):
        rows = rows["_row"].tolist()
        for k, row in enumerate(rows):
            earlier = [said[r] for r in reversed(rows[max(0, k - context_turns):k]) if present[r]]
            inputs[row] = " [SEP] ".join([said[row], *earlier])
    return inputs, present


@dataclass(frozen=True)
class TextBackbone:
    backbone: str = "kim_cnn"     # kim_cnn (the paper's) | sentence_transformer

    CHOICES = {"backbone": ("kim_cnn", "sentence_transformer")}


CONFIGS = (TextBackbone, TextConfig, SentenceConfig, CrossFitting)


def run(manifest_path, out, model_path, params_path, cache_root):
    params = section("text", params_path)
    configs("text", params, *CONFIGS)   # a typo fails here, before any work
    manifest, classes = read_manifest(manifest_path)
    return build(manifest, classes, params, out, model_path, cache_root, inputs=[manifest_path], params_path=params_path)


def build(manifest: pd.DataFrame, classes: list[str], params: dict, out, model_path, cache_root=None, inputs=(),
          params_path=None):
    """Train the CNN on the labelled training rows (its part serves valid, test and ``predict``);
    training rows get cross-fitted features; write the part and every row's features. ``inputs`` are
    recorded (hashed) in the lineage; the params file is not: the record holds ``params``, the
    stage's own section, as DVC tracks it."""
    backbone, config, sentence, crossfit = configs("text", params, *CONFIGS)
    if backbone.backbone not in ("kim_cnn", "sentence_transformer"):
        raise ParamsError(f"text.backbone must be kim_cnn or sentence_transformer, not {backbone.backbone!r}")
    check_writable(out, model_path, inputs=[*inputs, params_file(params_path)], stage="text")
    require_training_split(manifest, out, classes)
    if sentence.context_turns and backbone.backbone != "sentence_transformer":
        raise ParamsError(f"text.context_turns {sentence.context_turns}: only the sentence_transformer backbone "
                          f"reads context (the Kim CNN reads one utterance)")
    texts, present = text_inputs(manifest, sentence.context_turns)
    train, valid = training_parts(manifest, config.seed)
    y = label_indices(manifest["label"], classes)
    fit_rows, check_rows = train & present & (y >= 0), valid & present & (y >= 0)
    pick = lambda mask: [texts[i] for i in np.flatnonzero(mask)]  # noqa: E731
    learns = backbone.backbone == "kim_cnn" or sentence.finetune
    source = inputs[0] if inputs else out
    if learns:   # before any fitting: the checks cross_fit makes after the full part
        check_cross_fitting(crossfit.folds, manifest["dialogue_id"], train & present, valid & present, "text.folds",
                            source)
        require_rows_to_stop_on(check_rows, source, manifest, valid, y >= 0, present)

    def fit(mask):
        if backbone.backbone == "kim_cnn":
            return train_text_cnn(pick(mask), y[mask], pick(check_rows), y[check_rows], classes, config)
        if sentence.finetune:
            return finetune_encoder(pick(mask), y[mask], pick(check_rows), y[check_rows], classes, sentence,
                                    config.seed, config.device)
        return SentenceEncoder(sentence, classes, device=config.device), {}   # frozen: learns nothing

    featurizer, info = fit(fit_rows)
    save_part(featurizer, model_path)
    write_record(model_path, "text", params, inputs, extra={"classes": classes, **info,   # predict names a demo run
                                                             "datasets": sorted(manifest["dataset"].astype(str).unique())
                                                             if "dataset" in manifest else []})
    full = part_features(featurizer, pick(present), present)
    folds = cross_fit(lambda mask: fit(mask)[0], lambda part, mask: part.transform(pick(mask)), full,
                      manifest["dialogue_id"], train & present, fit_rows, valid & present,
                      crossfit.folds if learns else 0, config.seed,
                      cache_dir=Path(cache_root) / "text_folds" if cache_root else None,
                      cache_key=content_key(params, classes, texts, y, settings()))   # kernels move the numbers
    matrix = folds.features
    leak = head_accuracy(featurizer, folds, pick, y, fit_rows, check_rows) if learns else {}
    save_features(out, manifest["utterance_id"], matrix, present, np.where(present, "", "empty_text"), "text", params,
                  inputs, extra={"backbone": backbone.backbone, "vocab_size": info.get("vocab_size"),
                         "vectors_coverage": info.get("vectors_coverage"), "epochs_run": len(info.get("history", [])),
                         "crossfit": folds.info, "head_accuracy": leak})
    if leak:
        who = "the CNN's" if backbone.backbone == "kim_cnn" else "the fine-tuned encoder's head"
        print(f"text: {who} own accuracy on training rows {leak['train_in_fold']:.1f} (it saw them), "
              f"out of fold {leak.get('train_out_of_fold', float('nan')):.1f}, valid {leak['valid']:.1f}")
    print(f"text: {int(present.sum())}/{len(present)} utterances with words, {matrix.shape[1]}-d -> {out}")
    return matrix, present


def require_rows_to_stop_on(check_rows: np.ndarray, source, manifest=None, valid=None, labelled=None,
                            present=None) -> None:
    """A network fitted on labels picks its epoch on labelled valid rows with words: none is an
    error saying which of the three is missing, and how to fix it."""
    if not check_rows.any():
        why = "" if manifest is None else ": " + no_valid_rows_reason(
            manifest["split"].to_numpy(), manifest["dialogue_id"].to_numpy(), valid, labelled, present, "words",
            "text.seed, or hold out a valid split at ingest (ingest.holdout_share)")
        raise PipelineError(f"{source}: no labelled valid utterance with words, and the text network picks its "
                            f"epoch on them{why}")


def head_accuracy(full, folds, pick, y, fit_rows, check_rows) -> dict:
    """The classifier's own accuracy (%) on training rows it saw, on them out of fold, and on valid:
    the gap between the first two is what cross-fitting keeps out of the training features."""
    def acc(part, mask):
        return float((part.predict_proba(pick(mask)).argmax(1) == y[mask]).mean() * 100) if mask.any() else float("nan")

    out = {"train_in_fold": acc(full, fit_rows), "valid": acc(full, check_rows)}
    if folds.parts:
        hits = sum(acc(part, fit_rows & (folds.source == k)) / 100 * (fit_rows & (folds.source == k)).sum()
                   for k, part in enumerate(folds.parts))
        out["train_out_of_fold"] = float(hits / fit_rows.sum() * 100)
    return {k: round(v, 2) for k, v in out.items()}
