"""DIMMN against the baselines and single-modality runs on the pipeline's own store.

    python bench/demo_table.py --store data/store.npz --seeds 5

Prints a table, then one JSON object (percentages) as its last line.
"""
import argparse

from common import compare, last_line, print_table

VARIANTS = {
    "dimmn": {},
    "dimmn_concat": {"fusion": "concat"},        # "remove multiview"
    "dimmn_gru": {"context": "gru"},             # "remove TCN"
    "dimmn_all": {"window": "all"},              # the memory reads the whole dialogue, not the past only
    "dimmn_all_concat": {"window": "all", "fusion": "concat"},
    "bclstm": {"mode": "bclstm", "fusion": "concat"},
    "utterance": {"mode": "utterance", "fusion": "concat"},
    "text_only": {"modalities": ["text"]},
    "audio_only": {"modalities": ["audio"]},
    "visual_only": {"modalities": ["visual"]},
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="data/store.npz")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    from pipeline.store import load_store

    table = compare(load_store(args.store), {k: VARIANTS[k] for k in args.variants}, {"epochs": args.epochs, "patience": 10,
                                                       "weight_decay": 1e-4}, args.seeds)
    print_table(table)
    last_line(table)
