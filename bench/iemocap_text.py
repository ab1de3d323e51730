"""IEMOCAP transcripts (real, the standard ERC split) through the project's text CNN, then DIMMN's
conversation module in single-modality mode against the utterance-level baseline, several seeds.

    python bench/iemocap_text.py --data ../shared/data/iemocap_text --seeds 5

Published with text-CNN features: DialogueRNN 62.75, DialogueGCN 64.18 weighted F1.
The last line is one JSON object (percentages): {"text_cnn": {...}, "dimmn": {...}, "utterance": {...}}.
DIMMN here reads the whole dialogue (model window "all"); add {"window": "past"} to VARIANTS to compare.
"""
import argparse
from pathlib import Path

import numpy as np
from common import IEMOCAP_EMOTIONS, compare, last_line, print_table, read_iemocap_text, text_cnn_features

from extractors.text import TextConfig

VARIANTS = {
    "dimmn": {"modalities": ["text"], "window": "all"},
    "utterance": {"modalities": ["text"], "mode": "utterance"},
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "iemocap_text"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--vectors", default="glove-6b-50d")
    args = parser.parse_args()
    frame = read_iemocap_text(args.data)
    config = TextConfig(vectors=args.vectors, embedding_dim=50, epochs=30, patience=5)
    features, y, cnn_metrics, _ = text_cnn_features(frame, IEMOCAP_EMOTIONS, config)
    print(f"text CNN alone: test acc {cnn_metrics['acc']:.2f} wF1 {cnn_metrics['wf1']:.2f}", flush=True)
    store = {"utterance_id": np.array([f"{d}_{t}" for d, t in zip(frame["dialogue_id"], frame["turn"])]),
             "dialogue_id": frame["dialogue_id"].to_numpy().astype(str), "turn": frame["turn"].to_numpy(),
             "speaker": frame["speaker"].to_numpy().astype(str), "split": frame["split"].to_numpy().astype(str),
             "label": y, "classes": np.array(IEMOCAP_EMOTIONS), "text": features.astype(np.float32),
             "text_present": np.ones(len(frame), bool)}
    table = compare(store, VARIANTS, {"epochs": args.epochs, "patience": 10, "weight_decay": 1e-4, "batch_size": 8},
                    args.seeds)
    table = {"text_cnn": {"acc": round(cnn_metrics["acc"], 2), "wf1": round(cnn_metrics["wf1"], 2)}, **table}
    print_table({k: v for k, v in table.items() if k != "text_cnn"})
    last_line(table)
