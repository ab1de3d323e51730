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
    parser.add_argument("--format", help="demo | generic (params: ingest.format)")
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
                     extra={"labels": manifest.attrs["labels"], "counts": manifest["split"].value_counts().to_dict()})
        counts = ", ".join(f"{k} {v}" for k, v in manifest["split"].value_counts().items())
        print(f"ingest: {len(manifest)} utterances, {manifest['dialogue_id'].nunique()} dialogues ({counts}) "
              f"-> {args.out}")
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
    from pipeline.manifest import ManifestError

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ManifestError, MediaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
