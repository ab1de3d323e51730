"""A dataset's own layout (demo, generic CSV, MELD, IEMOCAP) into the manifest."""
from __future__ import annotations

from pathlib import Path

from pipeline.artifacts import check_writable
from pipeline.datasets import read_dataset
from pipeline.errors import ParamsError
from pipeline.lineage import write_record
from pipeline.manifest import require_training_split, write_manifest
from pipeline.params import section


def run(out, params_path, fmt=None, root=None, csv=None, labels=None):
    params = section("ingest", params_path)
    fmt, root = fmt or params.get("format", "demo"), root or params.get("root")
    params = {k: v for k, v in params.items() if k not in ("format", "root")}   # the reader's options
    if not root:
        raise ParamsError("ingest: no --root given and no ingest.root in params")
    if csv:
        params["csv"] = csv
    if labels:
        params["labels"] = labels
    check_writable(out)
    manifest = read_dataset(fmt, root, **params)
    require_training_split(manifest, root, manifest.attrs["labels"])
    write_manifest(manifest, out)
    listed = [p for p in (Path(csv) if csv else Path(root) / "manifest.csv",) if p.is_file()]
    skipped, dropped = manifest.attrs.get("skipped", []), manifest.attrs.get("dropped", {})
    counts = manifest["split"].value_counts().to_dict()
    write_record(out, "ingest", dict(params, format=fmt, root=str(root)), inputs=listed,
                 extra={"labels": manifest.attrs["labels"], "counts": counts, "skipped": skipped, "dropped": dropped})
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"ingest: {len(manifest)} utterances, {manifest['dialogue_id'].nunique()} dialogues ({shown}) -> {out}")
    if skipped:
        print(f"ingest: skipped {len(skipped)} (listed in {out}.meta.json), e.g. {skipped[0]}")
    if dropped:
        print(f"ingest: dropped labels outside the label map: {dropped}")
    return manifest
