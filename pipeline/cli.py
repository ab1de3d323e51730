"""``python -m pipeline <command>``: every DVC stage's command, runnable by hand on any data.

Each command takes its defaults from its own section of ``params.yaml`` (``--params`` names
another file); flags given on the command line win.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.params import section

COMMANDS = {}


def command(name, help_text):
    def register(func):
        COMMANDS[name] = (func, help_text)
        return func
    return register


def _pick(flag, params: dict, key: str, default=None):
    return flag if flag is not None else params.get(key, default)


@command("demo", "generate the built-in demo corpus of real .mp4 clips")
def demo_cmd(parser):
    parser.add_argument("--out", default="data/demo", help="output folder")
    parser.add_argument("--dialogues", type=int, help="number of dialogues (params: demo.dialogues)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workers", type=int)

    def run(args):
        from pipeline.demo.corpus import DemoConfig, generate

        params = section("demo", args.params)
        workers = _pick(args.workers, params, "workers", 1)
        params.pop("workers", None)
        for key in ("dialogues", "seed"):
            if getattr(args, key) is not None:
                params[key] = getattr(args, key)
        start = time.time()
        manifest = generate(args.out, DemoConfig.from_params(params), workers=workers)
        print(f"demo: {len(manifest)} clips in {manifest['dialogue_id'].nunique()} dialogues "
              f"-> {args.out} ({time.time() - start:.1f}s)")
    return run


@command("ingest", "read a dataset's layout into a manifest CSV")
def ingest_cmd(parser):
    parser.add_argument("--format", help="demo | generic | meld | iemocap (params: ingest.format)")
    parser.add_argument("--root", help="dataset folder (params: ingest.root)")
    parser.add_argument("--csv", help="generic format: the CSV (default ROOT/manifest.csv)")
    parser.add_argument("--labels", nargs="*", help="generic format: the label set")
    parser.add_argument("--out", default="data/manifest.csv")

    def run(args):
        from pipeline.datasets import read_dataset
        from pipeline.lineage import write_record
        from pipeline.manifest import write_manifest

        params = section("ingest", args.params)
        fmt, root = _pick(args.format, params, "format", "demo"), _pick(args.root, params, "root")
        if not root:
            raise SystemExit("ingest: no --root given and no ingest.root in params")
        options = {k: v for k, v in params.items() if k not in ("format", "root")}
        if args.csv:
            options["csv"] = args.csv
        if args.labels:
            options["labels"] = args.labels
        manifest = read_dataset(fmt, root, **options)
        write_manifest(manifest, args.out)
        listed = [p for p in (Path(args.csv) if args.csv else Path(root) / "manifest.csv",) if p.is_file()]
        write_record(args.out, "ingest", dict(params, format=fmt, root=root), inputs=listed,
                     extra={"labels": manifest.attrs["labels"], "counts": manifest["split"].value_counts().to_dict(),
                            "skipped": manifest.attrs.get("skipped", []), "dropped": manifest.attrs.get("dropped", {})})
        counts = ", ".join(f"{k} {v}" for k, v in manifest["split"].value_counts().items())
        print(f"ingest: {len(manifest)} utterances, {manifest['dialogue_id'].nunique()} dialogues ({counts}) "
              f"-> {args.out}")
        skipped, dropped = manifest.attrs.get("skipped", []), manifest.attrs.get("dropped", {})
        if skipped:
            print(f"ingest: skipped {len(skipped)} (listed in {args.out}.meta.json), e.g. {skipped[0]}")
        if dropped:
            print(f"ingest: dropped labels outside the label map: {dropped}")
    return run


def _manifest_and_classes(path):
    from pipeline.lineage import read_record
    from pipeline.manifest import load_manifest

    return load_manifest(path), list(read_record(path)["labels"])


@command("text", "train the text CNN on the training transcripts and featurise every utterance")
def text_cmd(parser):
    parser.add_argument("--manifest", default="data/manifest.csv")
    parser.add_argument("--out", default="data/features/text.npz")
    parser.add_argument("--model", default="data/models/text_cnn.pt", help="the trained extractor")

    def run(args):
        from pipeline.features import text_stage

        manifest, classes = _manifest_and_classes(args.manifest)
        matrix, present = text_stage(manifest, classes, section("text", args.params), args.out, args.model)
        print(f"text: {int(present.sum())}/{len(present)} utterances with words, {matrix.shape[1]}-d -> {args.out}")
    return run


def _media_command(modality, help_text):
    @command(modality, help_text)
    def factory(parser):
        parser.add_argument("--manifest", default="data/manifest.csv")
        parser.add_argument("--out", default=f"data/features/{modality}.npz")
        parser.add_argument("--model", default=f"data/models/{modality}.pkl", help="fitted reducer / network")
        parser.add_argument("--cache", default="data/cache", help="per-utterance cache root")
        parser.add_argument("--workers", type=int)

        def run(args):
            from pipeline.features import media_stage

            manifest, classes = _manifest_and_classes(args.manifest)
            params = section(modality, args.params)
            if args.workers is not None:
                params["workers"] = args.workers
            matrix, present, extra = media_stage(modality, manifest, classes, params, args.out, args.model,
                                                 args.cache)
            print(f"{modality}: {int(present.sum())}/{len(present)} clips, {matrix.shape[1]}-d "
                  f"({extra['computed']} computed, {extra['cached']} from cache; missing {extra['missing']})")
            if "face_frames" in extra:
                print(f"{modality}: faces in {extra['face_frames']}/{extra['frames']} frames; "
                      f"{extra['clips_without_face']} clips without a face")
        return run
    return factory


_media_command("audio", "openSMILE (or fbank) features per clip, standardised and reduced on train")
_media_command("visual", "face-crop descriptors per clip (handcrafted or 3D-CNN), reduced on train")


@command("align", "align the modality features by utterance id into one store, with a coverage report")
def align_cmd(parser):
    parser.add_argument("--manifest", default="data/manifest.csv")
    parser.add_argument("--features", default="data/features", help="folder of <modality>.npz")
    parser.add_argument("--out", default="data/store.npz")
    parser.add_argument("--report", default="data/coverage.json")

    def run(args):
        from pipeline.features import MODALITIES, align

        manifest, classes = _manifest_and_classes(args.manifest)
        paths = {m: Path(args.features) / f"{m}.npz" for m in MODALITIES if (Path(args.features) / f"{m}.npz").is_file()}
        _, report = align(manifest, classes, paths, args.out, args.report)
        for modality, info in report["modalities"].items():
            print(f"align: {modality} {info['present']}/{report['utterances']} present, missing {info['missing_by_reason']}")
    return run


@command("export", "write the aligned store as .npz, CSV and the conv-emotion pickle layout")
def export_cmd(parser):
    parser.add_argument("--store", default="data/store.npz")
    parser.add_argument("--out", default="data/export")
    parser.add_argument("--formats", nargs="+", choices=["npz", "csv", "pickle"])

    def run(args):
        from pipeline.exchange import export_store
        from pipeline.features import load_store

        formats = args.formats or section("export", args.params).get("formats", ["npz", "csv", "pickle"])
        for path in export_store(load_store(args.store), args.out, formats, source=args.store):
            print(f"export: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return run


@command("import", "read features made elsewhere (conv-emotion pickle, MOSI CSV) into a store")
def import_cmd(parser):
    parser.add_argument("--format", required=True, choices=["pickle", "mosi"])
    parser.add_argument("--src", required=True, help="the pickle file, or the MOSI folder")
    parser.add_argument("--out", required=True, help="the store to write (.npz)")
    parser.add_argument("--classes", nargs="*", help="pickle: class names in label order")

    def run(args):
        from pipeline.exchange import import_mosi, import_pickle, save_store

        store = import_pickle(args.src, args.classes) if args.format == "pickle" else import_mosi(args.src)
        save_store(store, args.out, "import", {"format": args.format, "src": str(args.src)}, inputs=[args.src])
        mods = [m for m in ("text", "audio", "visual") if m in store]
        print(f"import: {len(store['utterance_id'])} utterances, {len(set(store['dialogue_id']))} dialogues, "
              f"modalities {mods} -> {args.out}")
    return run


@command("train", "train DIMMN (or a baseline) on the store's train split, early stopping on valid")
def train_cmd(parser):
    parser.add_argument("--store", default="data/store.npz")
    parser.add_argument("--checkpoint", default="data/models/dimmn.pt")
    parser.add_argument("--history", default="data/train/history.csv", help="per-epoch metrics (DVC plots)")
    parser.add_argument("--summary", default="data/train/summary.json")

    def run(args):
        import json

        import pandas as pd

        from model.dimmn import ModelConfig
        from model.train import TrainConfig, train
        from pipeline.features import load_store
        from pipeline.lineage import write_record

        model_params, train_params = section("model", args.params), section("train", args.params)
        _, history, summary = train(load_store(args.store), ModelConfig.from_params(model_params),
                                    TrainConfig.from_params(train_params), checkpoint=args.checkpoint)
        if int(__import__("os").environ.get("RANK", "0")) != 0:
            return
        Path(args.history).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(history).to_csv(args.history, index=False)
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
        write_record(args.checkpoint, "train", {"model": model_params, "train": train_params},
                     inputs=[args.store], extra=summary)
        print(f"train: best valid wF1 {summary['best_valid_wf1']:.1f} after {summary['epochs_run']} epochs "
              f"on {summary['device']} -> {args.checkpoint}")
    return run


@command("evaluate", "metrics, confusion matrices (CSV for DVC plots, PNG) of a trained model on a split")
def evaluate_cmd(parser):
    parser.add_argument("--store", default="data/store.npz")
    parser.add_argument("--checkpoint", default="data/models/dimmn.pt")
    parser.add_argument("--out", default="data/eval")
    parser.add_argument("--split", help="params: evaluate.split (default test)")

    def run(args):
        import json

        import pandas as pd

        from model.metrics import classification_metrics, confusion, plot_confusion
        from model.train import load_checkpoint, pick_device, predict
        from pipeline.features import load_store
        from pipeline.lineage import write_record

        split = _pick(args.split, section("evaluate", args.params), "split", "test")
        store = load_store(args.store)
        device = pick_device("auto")
        model, blob = load_checkpoint(args.checkpoint, device)
        classes = blob["classes"]
        rows, probs = predict(model, store, store["split"] == split, device)
        keep = store["label"][rows] >= 0
        truth, pred = store["label"][rows][keep], probs[keep].argmax(1)
        metrics = classification_metrics(truth, pred, classes)
        metrics["split"] = split
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        pd.DataFrame({"actual": [classes[i] for i in truth], "predicted": [classes[i] for i in pred]}).to_csv(
            out / "predictions.csv", index=False)
        for norm in ("recall", "precision"):
            matrix = confusion(truth, pred, len(classes), norm)
            pd.DataFrame(matrix, index=classes, columns=classes).to_csv(out / f"confusion_{norm}.csv")
            plot_confusion(matrix, classes, f"{split}: normalised by {norm}", out / f"confusion_{norm}.png")
        write_record(out / "metrics.json", "evaluate", {"split": split}, inputs=[args.checkpoint, args.store])
        print(f"evaluate ({split}, {len(truth)} utterances): acc {metrics['acc']:.1f}  wF1 {metrics['wf1']:.1f}")
        for name, m in metrics["per_class"].items():
            print(f"  {name:>12}: acc {m['acc']:5.1f}  F1 {m['f1']:5.1f}  n={m['support']}")
    return run


@command("predict", "label a new conversation (clips + CSV) with a trained run, without retraining")
def predict_cmd(parser):
    parser.add_argument("--run", dest="run_dir", default="data/models", help="the trained run's folder")
    parser.add_argument("--clips", required=True, help="folder of the conversation's clips")
    parser.add_argument("--csv", required=True, help="turn, speaker, text, media (relative to --clips)")
    parser.add_argument("--out", default="predictions.csv")
    parser.add_argument("--cache", default="data/cache")

    def run(args):
        from pipeline.params import load_params
        from pipeline.predict import predict_conversation

        table = predict_conversation(args.run_dir, args.clips, args.csv, load_params(args.params), args.cache)
        table.to_csv(args.out, index=False)
        probs = [c for c in table.columns if c.startswith("p_")]
        shown = table[["turn", "speaker", "utterance_id", "predicted"] + probs]
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print(f"predict: {len(table)} utterances -> {args.out}")
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (factory, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
        p.set_defaults(run=factory(p))
    return parser


def main(argv=None) -> int:
    from extractors.media import MediaError
    from extractors.text import TextError
    from pipeline.exchange import ExchangeError
    from pipeline.manifest import ManifestError
    from pipeline.predict import PredictError

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ManifestError, MediaError, TextError, ExchangeError, PredictError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
