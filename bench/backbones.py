"""Each audio and visual backbone on one corpus (the demo's by default): the stage's own features
(per-clip cache, the reduction, cross-fitting where a part learns from labels), then the
utterance-level and BiGRU (bc-LSTM-like) models on that modality alone, several seeds, in one
run. Early stopping on the valid split; test is only scored.

    python bench/backbones.py --manifest data/manifest.csv --cache data/cache --seeds 5

Settings are params.yaml's sections with each backbone's keys on top. Prints a table per
modality, then one JSON object: {modality: {backbone: {model: summary}}, "features":
{modality: {backbone: {dim, raw_dim, missing, seconds}}}}.
"""
import argparse
import tempfile
import time
from pathlib import Path

from common import compare, last_line, print_table

BACKBONES = {
    "audio": {"handcrafted": {},   # ComParE_2016 functionals, the paper's
              "whisper": {"backbone": "whisper"},
              "whisper_l4": {"backbone": "whisper", "layer": 4},
              "whisper_mean_std": {"backbone": "whisper", "pooling": "mean_std"}},
    "visual": {"handcrafted": {}, "landmarks": {"backbone": "landmarks"}, "expression": {"backbone": "expression"}},
}
MODELS = {"utterance": {"mode": "utterance"}, "bclstm": {"mode": "bclstm"}}


def backbone_store(modality, manifest, classes, params, cache, workdir, workers):
    """A one-modality store of the stage's features with ``params``, and how they were made."""
    from pipeline.stages import media
    from pipeline.store import store_columns

    start = time.time()
    matrix, present, extra = media.build(modality, manifest, classes, params, Path(workdir) / f"{modality}.npz",
                                         Path(workdir) / f"{modality}.pt", cache, workers=workers, progress=False)
    store = dict(store_columns(manifest, classes), **{modality: matrix, f"{modality}_present": present})
    made = {"dim": int(matrix.shape[1]), "raw_dim": extra["raw_dim"], "missing": extra["missing"],
            "seconds": round(time.time() - start, 1)}
    return store, made


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="data/manifest.csv")
    parser.add_argument("--cache", default="data/cache")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--modalities", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--backbones", nargs="+", help="only these (names from either modality)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from pipeline.manifest import read_manifest
    from pipeline.params import section

    manifest, classes = read_manifest(args.manifest)
    train = section("train", args.params)
    out, features = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for modality in args.modalities:
            out[modality], features[modality] = {}, {}
            for name, keys in BACKBONES[modality].items():
                if args.backbones and name not in args.backbones:
                    continue
                params = {**section(modality, args.params), **keys}
                store, features[modality][name] = backbone_store(modality, manifest, classes, params, args.cache,
                                                                 Path(tmp) / f"{modality}_{name}", args.workers)
                print(f"{modality} {name}: {features[modality][name]}", flush=True)
                variants = {model: {**mode, "modalities": [modality]} for model, mode in MODELS.items()}
                out[modality][name] = compare(store, variants, train, args.seeds)
                print_table(out[modality][name])
    last_line({**out, "features": features})
