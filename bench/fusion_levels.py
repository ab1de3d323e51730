"""What the multiview levels (H, the paper's Table 4) can still change in a trained model.

    python bench/fusion_levels.py --checkpoint data/models/dimmn.pt --store data/store.npz

Eq. 5-8 make each level's two columns convex combinations of the previous level's two columns
x, y: F_g - f_g = (att_g[0] - att_other[0]) (x - y). So the gap between a view's columns shrinks
at every level by the difference of the two views' attention weights, and once it is near zero
further levels mix two equal vectors. This prints that factor per level (median and 90th
percentile over the test utterances), then runs the same trained weights with other H (the
views' parameters are shared across levels, so any H runs): test accuracy and the share of test
predictions that differ from the trained H. The last line is one JSON object.
"""
import argparse
import dataclasses

from common import last_line  # first: it pins the CPU kernels before numpy loads
import numpy as np

from model.dimmn import DIMMN
from model.explain import explain
from model.train import load_checkpoint, pick_device
from pipeline.store import load_store


def predictions(explained: list[dict]) -> np.ndarray:
    return np.concatenate([d["probs"].argmax(1) for d in explained])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="data/models/dimmn.pt")
    parser.add_argument("--store", default="data/store.npz")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4, 5, 8])
    args = parser.parse_args()
    device = pick_device("auto")
    model, blob = load_checkpoint(args.checkpoint, device)
    if not hasattr(model, "fusion") or not hasattr(model.fusion, "pairs"):
        raise SystemExit(f"{args.checkpoint}: no multiview fusion (fusion: concat, or one modality)")
    store = load_store(args.store)
    test = store["split"] == "test"
    explained = explain(model, store, test, device)
    labels = store["label"][np.concatenate([d["rows"] for d in explained])]
    # |att_g[0] - att_other[0]| at each level that feeds the next one: (utterances, H - 1)
    factors = np.abs(np.concatenate([d["views"][:, :-1, 0, 0] - d["views"][:, :-1, 1, 0] for d in explained]))
    per_level = {f"level_{i + 1}": {"median": round(float(np.median(f)), 4), "p90": round(float(np.quantile(f, 0.9)), 4)}
                 for i, f in enumerate(factors.T)}
    for name, v in per_level.items():
        print(f"{name}: the columns' gap shrinks by x{v['median']} (median), x{v['p90']} (90th percentile)")
    reference, trained_h, by_h = predictions(explained), model.config.H, {}
    for h in args.levels:
        other = DIMMN(dataclasses.replace(model.config, H=h), blob["dims"], len(blob["classes"]))
        other.load_state_dict(model.state_dict())
        pred = predictions(explain(other.to(device), store, test, device))
        by_h[h] = {"acc": round(100 * float((pred == labels).mean()), 2),
                   "changed": round(100 * float((pred != reference).mean()), 2)}
        print(f"H={h}: test acc {by_h[h]['acc']:.2f}, predictions changed vs trained H={trained_h}: {by_h[h]['changed']:.2f} %")
    last_line({"trained_H": trained_h, "factors": per_level, "by_H": by_h})
