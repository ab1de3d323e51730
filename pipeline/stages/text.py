"""Text features: the Kim CNN trained on the training transcripts; its 100-d layer per utterance."""
from __future__ import annotations

import numpy as np
import pandas as pd

from extractors.text import TextConfig, has_words, train_text_cnn
from pipeline.artifacts import check_writable
from pipeline.parts import save_part
from pipeline.lineage import write_record
from pipeline.manifest import read_manifest, require_training_split, training_parts
from pipeline.params import configs, section
from pipeline.store import label_indices, part_features, save_features


def text_inputs(frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Every row's text, and which rows have words (others are masked as ``empty_text``)."""
    texts = frame["text"].fillna("").astype(str).tolist()
    return texts, np.array([has_words(t) for t in texts], dtype=bool)


def run(manifest_path, out, model_path, params_path):
    params = section("text", params_path)
    configs("text", params, TextConfig)   # a typo fails here, before any work
    manifest, classes = read_manifest(manifest_path)
    return build(manifest, classes, params, out, model_path)


def build(manifest: pd.DataFrame, classes: list[str], params: dict, out, model_path):
    """Train the CNN on the labelled training rows; write its part and every row's features."""
    config = configs("text", params, TextConfig)
    check_writable(out, model_path)
    require_training_split(manifest, out, classes)
    texts, present = text_inputs(manifest)
    train, valid = training_parts(manifest, config.seed)
    y = label_indices(manifest["label"], classes)
    fit_rows, check_rows = train & present & (y >= 0), valid & present & (y >= 0)
    featurizer, info = train_text_cnn([texts[i] for i in np.flatnonzero(fit_rows)], y[fit_rows],
                                      [texts[i] for i in np.flatnonzero(check_rows)], y[check_rows],
                                      classes, config)
    save_part(featurizer, model_path)
    write_record(model_path, "text", params, extra={"classes": classes, **info})
    matrix = part_features(featurizer, [texts[i] for i in np.flatnonzero(present)], present)
    save_features(out, manifest["utterance_id"], matrix, present, np.where(present, "", "empty_text"), "text", params,
                  extra={"vocab_size": info["vocab_size"], "vectors_coverage": info["vectors_coverage"],
                         "epochs_run": len(info["history"])})
    print(f"text: {int(present.sum())}/{len(present)} utterances with words, {matrix.shape[1]}-d -> {out}")
    return matrix, present
