"""The paper's ablations (its Tables 4-8) on one saved store, around a base configuration, with the
bc-LSTM-like and utterance-level baselines in the same run.

    python bench/paper_tables.py --store .gpu/iemocap/kim_cnn.npz --tables 5 6 \\
        --base '{"modalities": ["text"], "window": "all"}'
    python bench/paper_tables.py --store data/store.npz --tables 4 7 --base '{"window": "all"}'

Table 4 varies H (multiview levels), 5 the TCN kernel K, 6 its blocks L, 7 the views (A+V+T is
``fusion: concat``), 8 the paper's orthogonal array of 16 (H, K, L). H and the views act on the
multiview fusion, which needs two modalities or more: Tables 4 and 7 on a one-modality base are an
error, and Table 8 there is the 16 (K, L) pairs. A variant equal to the base runs once, as
``dimmn``. Training settings and selection as in ``bench/sweep.py``; the last line is one JSON object.
"""
import argparse
import json

from common import run_store_sweep, store_sweep_arguments

ORTHOGONAL = [(2, 3, 5), (2, 4, 6), (2, 6, 7), (2, 8, 8), (3, 3, 6), (3, 4, 5), (3, 6, 8), (3, 8, 7),
              (4, 3, 7), (4, 4, 8), (4, 6, 5), (4, 8, 6), (5, 3, 8), (5, 4, 7), (5, 6, 6), (5, 8, 5)]   # Table 8
TABLES = {
    "4": {f"H{h}": {"H": h} for h in (2, 3, 4, 5)},
    "5": {f"K{k}": {"K": k} for k in (3, 4, 6, 8)},
    "6": {f"L{n}": {"L": n} for n in (5, 6, 7, 8)},
    "7": {"A+V+T": {"fusion": "concat"}, **{v: {"views": v} for v in ("TV+AV", "TA+VA", "VT+AT")}},
    "8": {f"H{h}_K{k}_L{n}": {"H": h, "K": k, "L": n} for h, k, n in ORTHOGONAL},
}
PAPER = {"H": 3, "K": 6, "L": 6, "views": "TA+VA", "fusion": "multiview"}   # the paper's choice, our defaults
FUSION_ONLY = {"H", "views", "fusion"}


def variants_for(tables: list[str], base: dict) -> dict:
    """{name: model params}: the base as ``dimmn``, each table's changes to it, then the baselines."""
    single = len(base.get("modalities", ["text", "audio", "visual"])) < 2
    if single and {"4", "7"} & set(tables):
        raise SystemExit("Tables 4 and 7 vary the multiview fusion, which needs two modalities or more: "
                         f"the base uses {base['modalities']}")
    full_base = {**PAPER, **base}
    key = lambda params: json.dumps({k: v for k, v in params.items() if not (single and k in FUSION_ONLY)},  # noqa: E731
                                    sort_keys=True)
    variants, seen = {"dimmn": base}, {key(full_base)}
    for table in tables:
        for name, change in TABLES[table].items():
            if single:
                change = {k: v for k, v in change.items() if k not in FUSION_ONLY}
                name = "_".join(part for part in name.split("_") if part[0] not in "H") or name
            if (signature := key({**full_base, **change})) not in seen:
                seen.add(signature)
                variants[name] = {**base, **change}
    baseline = {k: v for k, v in base.items() if k in ("modalities", "dropout")}
    variants["bclstm"] = {**baseline, "mode": "bclstm", "fusion": "concat"}
    variants["utterance"] = {**baseline, "mode": "utterance", "fusion": "concat"}
    return variants


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_sweep_arguments(parser)
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), required=True)
    parser.add_argument("--base", default="{}", help="JSON model params every variant starts from")
    args = parser.parse_args()
    variants = variants_for(args.tables, json.loads(args.base))
    print("variants:", ", ".join(variants), flush=True)
    run_store_sweep(args, variants)
