"""The shipped model (data/shipped/meld-context) on MELD's test split, from its stored head.

    python bench/shipped_model.py --data ../shared/data

Encodes the test utterances exactly as ``python -m pipeline ship`` did (the same chunks of MELD's
CSVs, cached under --cache: the first run encodes about 3,000 utterances), reads each test
dialogue with the shipped head, and scores it. The last line is one JSON object: the model's
folder, its test weighted F1, accuracy and per-class F1, and the card's figures (5 seeds, from
the rebuild) for comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.numerics import pin  # noqa: E402

pin()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="the shared data folder (holds meld_text/)")
    parser.add_argument("--model", default=str(ROOT / "data/shipped/meld-context"))
    parser.add_argument("--cache", default=str(ROOT / "data/cache"))
    args = parser.parse_args()

    from pipeline.datasets import read_meld_transcripts
    from pipeline.shipped import load_shipped
    from pipeline.stages.ship import ShipConfig, dialogues_of, encode_cached, score
    from pipeline.lineage import read_record

    model = load_shipped(args.model)
    recorded = read_record(Path(args.model) / "head.pt")["params"]
    config = ShipConfig(**{k: v for k, v in recorded.items() if k in ShipConfig.__dataclass_fields__})
    frame = read_meld_transcripts(Path(args.data) / "meld_text")
    test = frame.index[frame["split"] == "test"]
    states = encode_cached(frame["text"].tolist(), config, args.cache, rows=test)
    scored = score(model.head, states, dialogues_of(frame, "test", model.head.config.speakers))
    card = model.blob["card"]
    result = {"model_dir": str(Path(args.model).resolve().relative_to(ROOT)),
              "meld_test": {"wf1": round(scored["wf1"], 2), "acc": round(scored["acc"], 2),
                            "per_class_f1": {c: round(v["f1"], 2) for c, v in scored["per_class"].items()}},
              "card": {k: card[k] for k in ("wf1_mean", "wf1_min", "wf1_max", "seeds")},
              "card_shipped_seed_wf1": model.blob["test_wf1"]}
    print(json.dumps(result))
