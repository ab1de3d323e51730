"""Shared by the benchmarks: train model variants over several seeds on a store, summarise."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pipeline.numerics import pin

UNPINNED_ENV = dict(os.environ)   # for child processes that pin (or not) themselves
pin()   # before numpy and torch load: the kernels and threads `python -m pipeline` runs with

import numpy as np  # noqa: E402

# No torch or model import at module level: the extraction benchmarks import this module, and
# their worker processes (forkserver) import the main script again, so it must stay light.


def run_variant(store: dict, model_params: dict, train_params: dict, seed: int, split: str = "test") -> dict:
    from model.dimmn import ModelConfig
    from model.metrics import classification_metrics
    from model.train import TrainConfig, pick_device, predict_probs, train

    start = time.time()
    model, history, summary = train(store, ModelConfig(**model_params), TrainConfig(**{**train_params, "seed": seed}),
                                    progress=False)
    device = pick_device(train_params.get("device", "auto"))
    rows, probs = predict_probs(model, store, store["split"] == split, device)
    metrics = classification_metrics(store["label"][rows], probs.argmax(1), [str(c) for c in store["classes"]])
    return {"acc": metrics["acc"], "wf1": metrics["wf1"], "epochs": summary["epochs_run"],
            "seconds": time.time() - start, "best_valid_wf1": summary["best_valid_wf1"]}


def compare(store: dict, variants: dict, train_params: dict, seeds, log=print) -> dict:
    """{name: {acc_mean, acc_min, acc_max, wf1_mean, ...}} over ``seeds`` (a count, or the seeds
    themselves) per variant."""
    table, seeds = {}, range(seeds) if isinstance(seeds, int) else list(seeds)
    for name, model_params in variants.items() if len(seeds) else ():   # --seeds 0: features only
        runs = []
        for seed in seeds:
            runs.append(run_variant(store, model_params, train_params, seed))
            log(f"{name:>12} seed {seed}: acc {runs[-1]['acc']:.2f} wF1 {runs[-1]['wf1']:.2f} "
                f"({runs[-1]['epochs']} epochs, {runs[-1]['seconds']:.0f}s)")
        acc, wf1 = np.array([r["acc"] for r in runs]), np.array([r["wf1"] for r in runs])
        table[name] = {"acc_mean": round(float(acc.mean()), 2), "acc_min": round(float(acc.min()), 2),
                       "acc_max": round(float(acc.max()), 2), "wf1_mean": round(float(wf1.mean()), 2),
                       "wf1_min": round(float(wf1.min()), 2), "wf1_max": round(float(wf1.max()), 2)}
    return table


def repeated_segments(media: list, rows: int):
    """``rows`` manifest rows cycling over the clips ``media``, each the whole clip but ending a
    millisecond earlier than its previous row, so every row is its own cache entry: a corpus of
    any size from a few clips (each clip probed once)."""
    import pandas as pd

    from extractors.media import probe

    media = [str(m) for m in media]
    duration = {m: probe(m).duration for m in media}
    return pd.DataFrame([{"utterance_id": f"u{i}", "media": media[i % len(media)], "start": 0.0,
                          "end": duration[media[i % len(media)]] - 0.001 * (1 + i // len(media))}
                         for i in range(rows)])


def training_share(store: dict, share: float, seed: int = 0) -> dict:
    """The store with only ``share`` of its training dialogues (seeded) left in ``train``; the
    rest become ``unused``. Valid and test stay whole: a learning curve's points compare."""
    if share >= 1:
        return store
    dialogues = np.unique(store["dialogue_id"][store["split"] == "train"])
    kept = np.random.default_rng(seed).choice(dialogues, max(1, round(share * len(dialogues))), replace=False)
    dropped = (store["split"] == "train") & ~np.isin(store["dialogue_id"], kept)
    return dict(store, split=np.where(dropped, "unused", store["split"]))


def store_sweep_arguments(parser) -> None:
    """The options of a sweep over one saved store: --store, --seeds, --seed, --train."""
    parser.add_argument("--store", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, action="append", help="run these seeds only (repeatable), not 0..N-1")
    parser.add_argument("--train", default="{}", help="JSON overriding the training settings")


def run_store_sweep(args, variants: dict, share: float = 1.0) -> None:
    """Train ``variants`` on ``args.store`` over the seeds (the text benchmarks' training settings,
    ``--train`` on top); print the table, then its JSON as the last line."""
    from pipeline.store import load_store

    table = compare(training_share(load_store(args.store), share), variants, {**TEXT_TRAIN, **json.loads(args.train)},
                    args.seed or args.seeds)
    print_table(table)
    last_line(table)


def print_table(table: dict) -> None:
    print(f"{'model':>14} | {'acc mean':>8} {'min':>6} {'max':>6} | {'wF1 mean':>8} {'min':>6} {'max':>6}")
    for name, r in table.items():
        print(f"{name:>14} | {r['acc_mean']:8.2f} {r['acc_min']:6.2f} {r['acc_max']:6.2f} | "
              f"{r['wf1_mean']:8.2f} {r['wf1_min']:6.2f} {r['wf1_max']:6.2f}")


# Whisper as the benchmarks time and score it: name -> (transcribe.model, transcribe.beam_size);
# tiny.en with beam 1 is the fast choice (docs/results.md)
WHISPER_VARIANTS = {"base": ("base", 5), "tiny_en": ("tiny.en", 5), "tiny_en_beam1": ("tiny.en", 1)}


def last_line(obj) -> None:
    print(json.dumps(obj), flush=True)



def read_meld_text(folder):
    """MELD's {train,dev,test}_sent_emo.csv as one frame with split train/valid/test."""
    from pipeline.datasets import read_meld_transcripts

    return read_meld_transcripts(folder)


def read_iemocap_text(folder):
    import pandas as pd

    frame = pd.read_csv(Path(folder) / "iemocap_utterances.csv")
    return pd.DataFrame({"split": frame["split"], "dialogue_id": frame["dialogue_id"], "turn": frame["utterance_index"],
                         "speaker": frame["speaker"], "text": frame["text"].fillna(""), "label": frame["emotion"]})


def text_cnn_features(frame, classes, config):
    """Train the project's text CNN on train (early stopping on valid); return features, test metrics."""
    from extractors.text import train_text_cnn
    from model.metrics import classification_metrics
    from pipeline.store import label_indices

    y = label_indices(frame["label"], classes)
    texts = frame["text"].astype(str).tolist()
    part = {s: (frame["split"] == s).to_numpy() for s in ("train", "valid", "test")}
    pick = lambda s: [texts[i] for i in np.flatnonzero(part[s])]  # noqa: E731
    featurizer, info = train_text_cnn(pick("train"), y[part["train"]], pick("valid"), y[part["valid"]], classes, config)
    pred = featurizer.predict_proba(pick("test")).argmax(1)
    metrics = classification_metrics(y[part["test"]], pred, classes)
    return featurizer.transform(texts), y, metrics, info


# The text benchmarks' backbones: the paper's Kim CNN (GloVe 50-d, cross-fitted), a frozen
# sentence encoder (all-MiniLM-L6-v2, bundled) and the same encoder fine-tuned with a linear head
# (cross-fitted like the CNN): all through the pipeline's own text stage.
# The fine-tuned one's protocol is cut for 2 CPU cores (an epoch over IEMOCAP's 5163 training
# utterances took 12-15 min there, the cores shared with other jobs): 2 folds (two
# half-data fits and the full fit), at most 2 epochs (MELD's dev wF1 rose from 50.8 after one to
# 57.3 after two in the probe), the best epoch on the valid split's wF1, lr 5e-5, batch 32,
# 48 word pieces (longer: 0.2 % of MELD's and 3.8 % of IEMOCAP's training utterances).
FINETUNED = {"backbone": "sentence_transformer", "finetune": True, "finetune_epochs": 2, "finetune_patience": 1,
             "finetune_lr": 5e-5, "finetune_batch_size": 32, "max_tokens": 48, "folds": 2}
TEXT_BACKBONES = {
    "kim_cnn": {"backbone": "kim_cnn", "vectors": "glove-6b-50d", "embedding_dim": 50, "epochs": 30, "patience": 5,
                "lr": 0.001, "folds": 5},
    "sentence_transformer": {"backbone": "sentence_transformer", "finetune": False},
    "finetuned": FINETUNED,
    # the same, reading the turn before too ("speaker: text [SEP] speaker: the turn before"), as
    # RoBERTa-with-context does: 64 word pieces (about 2x an epoch's time here)
    "finetuned_context": {**FINETUNED, "max_tokens": 64, "context_turns": 1},
}
CONTEXT_VARIANTS = {
    "dimmn": {"modalities": ["text"], "window": "all"},
    "bclstm": {"modalities": ["text"], "mode": "bclstm"},
    "utterance": {"modalities": ["text"], "mode": "utterance"},
}
TEXT_TRAIN = {"epochs": 60, "patience": 10, "weight_decay": 1e-4, "batch_size": 8}


def text_bench_args(doc: str, folder: str):
    """The text benchmarks' command line: --data (the dataset's folder beside the repo's
    ../shared/data), --seeds, --backbones, --stores."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / folder))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--backbones", nargs="+", default=list(TEXT_BACKBONES), choices=list(TEXT_BACKBONES))
    parser.add_argument("--stores", help="a folder keeping each backbone's feature store for re-runs and bench/sweep.py")
    parser.add_argument("--train", default="{}", help='JSON overriding the context models\' training settings '
                                                      '(TEXT_TRAIN), e.g. \'{"batch_size": 32}\'')
    args = parser.parse_args()
    args.train = {**TEXT_TRAIN, **json.loads(args.train)}
    return args


def text_store(frame, classes, params: dict, workdir) -> tuple[dict, dict]:
    """The pipeline's text stage on a transcript table: a text-only store and the stage's record."""
    import json

    from pipeline.stages import text
    from pipeline.store import label_indices

    workdir = Path(workdir)
    frame = frame.reset_index(drop=True).assign(utterance_id=[f"{d}_{t}" for d, t in zip(frame["dialogue_id"], frame["turn"])])
    matrix, present = text.build(frame, classes, params, workdir / "text.npz", workdir / "text.pt", workdir / "cache")
    store = {"utterance_id": frame["utterance_id"].to_numpy().astype(str),
             "dialogue_id": frame["dialogue_id"].to_numpy().astype(str), "turn": frame["turn"].to_numpy(),
             "speaker": frame["speaker"].to_numpy().astype(str), "split": frame["split"].to_numpy().astype(str),
             "label": label_indices(frame["label"], classes), "classes": np.array(classes),
             "text": matrix, "text_present": present}
    record = json.loads((workdir / "text.npz.meta.json").read_text())
    part = workdir / "text.pt.meta.json"   # the full part's own record: a fitted part's epochs on valid
    record["history"] = json.loads(part.read_text()).get("history", []) if part.is_file() else []
    return store, record


def text_bench(frame, classes, seeds: int, variants=None, train_params=None, log=print, backbones=None,
               stores=None) -> dict:
    """{backbone: {model: summary}} plus {"features": {backbone: how the features were made}}.

    ``stores``: a folder keeping each backbone's store (``<backbone>.npz`` and its record), so a
    later run, or ``bench/sweep.py`` on another machine, trains on the very same features."""
    import tempfile

    out, features = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, params in TEXT_BACKBONES.items():
            if backbones and backbone not in backbones:
                continue
            start = time.time()
            store, record = cached_text_store(frame, classes, params, Path(tmp) / backbone, stores, backbone)
            features[backbone] = {"dim": int(store["text"].shape[1]), "crossfit": record["crossfit"],
                                  "head_accuracy": record["head_accuracy"], "epochs_run": record.get("epochs_run"),
                                  "history": record.get("history", []), "seconds": round(time.time() - start, 1)}
            log(f"{backbone}: features {features[backbone]}")
            out[backbone] = compare(store, variants or CONTEXT_VARIANTS, train_params or TEXT_TRAIN, seeds, log)
            print_table(out[backbone])
    return {**out, "features": features}


def cached_text_store(frame, classes, params: dict, workdir, stores, backbone: str) -> tuple[dict, dict]:
    from pipeline.store import load_store, write_npz

    if stores is None:
        return text_store(frame, classes, params, workdir)
    path, record_path = Path(stores) / f"{backbone}.npz", Path(stores) / f"{backbone}.record.json"
    if path.is_file() and record_path.is_file():
        return load_store(path), json.loads(record_path.read_text())
    store, record = text_store(frame, classes, params, workdir)
    write_npz(path, store)
    record_path.write_text(json.dumps(record, indent=1))
    return store, record
