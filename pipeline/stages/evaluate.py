"""Metrics and confusion matrices (CSV for DVC plots, PNG) of a trained model on one split."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from model.data import SPLIT_NAMES, canonical_split
from model.metrics import classification_metrics, confusion, plot_confusion
from model.train import check_store_fits, load_checkpoint, pick_device, predict_probs
from pipeline.artifacts import atomic_write, check_writable
from pipeline.errors import PipelineError, shown
from pipeline.lineage import write_record
from pipeline.params import configs, params_file, section
from pipeline.store import load_store

EVALUATE_FILES = ("predictions.csv", "confusion_recall.csv", "confusion_recall.png", "confusion_precision.csv",
                  "confusion_precision.png")   # beside metrics.json, which has the record


@dataclass(frozen=True)
class EvaluateConfig:
    split: str = "test"   # read as manifests read splits (canonical_split: TEST and dev too), checked in run


def run(store_path, checkpoint, out, params_path, split=None):
    flag, given = split, split or configs("evaluate", section("evaluate", params_path), EvaluateConfig).split
    split = canonical_split(given)   # TEST: test, dev: valid, as in a manifest
    if split is None:
        where = "--split" if flag else "params evaluate.split"
        raise PipelineError(f"evaluate {where}: unknown split {shown(given)}; expected one of {SPLIT_NAMES}")
    out = Path(out)
    check_writable(out / "metrics.json", unrecorded=[out / n for n in EVALUATE_FILES], folders=[out],
                   inputs=[store_path, checkpoint, params_file(params_path)], stage="evaluate")
    store = load_store(store_path)
    model, blob = load_checkpoint(checkpoint, pick_device("auto"))
    check_store_fits(store, blob, store_path, checkpoint)
    classes = blob["classes"]
    rows, probs = predict_probs(model, store, store["split"] == split, pick_device("auto"))
    keep = store["label"][rows] >= 0
    if not keep.any():
        raise PipelineError(f"{store_path}: no labelled utterance in the {split!r} split to evaluate on")
    truth, pred = store["label"][rows][keep], probs[keep].argmax(1)
    metrics = dict(classification_metrics(truth, pred, classes), split=split)
    out = Path(out)
    atomic_write(out / "metrics.json", lambda handle: handle.write((json.dumps(metrics, indent=2) + "\n").encode()))
    table = pd.DataFrame({"actual": [classes[i] for i in truth], "predicted": [classes[i] for i in pred]})
    atomic_write(out / "predictions.csv", lambda handle: table.to_csv(handle, index=False))
    for norm in ("recall", "precision"):
        matrix = confusion(truth, pred, len(classes), norm)
        frame = pd.DataFrame(matrix, index=classes, columns=classes)
        atomic_write(out / f"confusion_{norm}.csv", lambda handle: frame.to_csv(handle))
        plot_confusion(matrix, classes, f"{split}: normalised by {norm}", out / f"confusion_{norm}.png")
    write_record(out / "metrics.json", "evaluate", {"split": split}, inputs=[checkpoint, store_path])
    print(f"evaluate ({split}, {len(truth)} utterances): acc {metrics['acc']:.1f}  wF1 {metrics['wf1']:.1f}")
    for name, m in metrics["per_class"].items():
        print(f"  {name:>12}: acc {m['acc']:5.1f}  F1 {m['f1']:5.1f}  n={m['support']}")
    return metrics
