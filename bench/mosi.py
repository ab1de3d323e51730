"""CMU-MOSI (real text / audio / video features, binary sentiment, speaker-independent split):
DIMMN (TA+VA views) against the bc-LSTM-like and utterance-level baselines, several seeds.

    python bench/mosi.py --data ../shared/data/mosi_features --seeds 5

A video is a one-speaker dialogue. The last line is one JSON object (percentages):
{"dimmn": {"acc_mean", "acc_min", "acc_max", "wf1_mean", ...}, "bclstm": {...}, "utterance": {...}}
Published for bc-LSTM on this data: about 80.3 % accuracy; the majority class is 62.1 %.
"""
import argparse
from pathlib import Path

from common import compare, last_line, print_table

from pipeline.stages.exchange import import_mosi

VARIANTS = {
    "dimmn": {"views": "TA+VA", "window": "all"},   # a monologue: later utterances are context too
    "bclstm": {"mode": "bclstm", "fusion": "concat"},
    "utterance": {"mode": "utterance", "fusion": "concat"},
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi_features"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.5)
    args = parser.parse_args()
    store = import_mosi(args.data)
    variants = {k: {**v, "dropout": args.dropout} for k, v in VARIANTS.items()}
    table = compare(store, variants, {"epochs": args.epochs, "patience": 10, "lr": args.lr, "weight_decay": 1e-4,
                                      "batch_size": 4}, args.seeds)
    print_table(table)
    last_line(table)
