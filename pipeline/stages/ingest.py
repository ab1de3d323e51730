"""A dataset's own layout (demo, generic CSV, MELD, IEMOCAP, subtitled recordings) into the manifest."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.data import holdout_valid
from pipeline.artifacts import check_writable
from pipeline.datasets import command_line_labels, read_dataset
from pipeline.errors import ParamsError
from pipeline.lineage import write_record
from pipeline.manifest import require_training_split, write_manifest
from pipeline.params import configs, params_file, section


HOLDOUT = ("holdout_share", "holdout_seed")


@dataclass(frozen=True)
class HoldoutConfig:
    """The valid split ingest holds out of the training dialogues (the other keys are the reader's)."""
    holdout_share: float = 0.1
    holdout_seed: int = 0


def hold_out_valid(manifest, share: float, seed: int):
    """Without a valid split, a seeded share of the training dialogues becomes ``valid`` in the
    manifest itself: every stage (extractors, model) then selects on the same dialogues."""
    if (manifest["split"] == "valid").any():
        return manifest, []
    train, valid = holdout_valid(manifest["split"].to_numpy(), manifest["dialogue_id"].to_numpy(), seed, share)
    if valid.any() and not train.any():
        raise ParamsError(f"params ingest.holdout_share: {share!r} holds out every training dialogue "
                          f"({len(set(manifest.loc[valid, 'dialogue_id']))}); nothing would be left to train on")
    manifest = manifest.copy()
    manifest.loc[valid, "split"] = "valid"
    return manifest, sorted(set(manifest.loc[valid, "dialogue_id"]))


def run(out, params_path, fmt=None, root=None, csv=None, labels=None, cache=None):
    params = section("ingest", params_path)
    fmt, root = fmt or params.get("format", "demo"), root or params.get("root")
    holdout = configs("ingest", {k: params[k] for k in HOLDOUT if k in params}, HoldoutConfig)
    share, seed = float(holdout.holdout_share), holdout.holdout_seed
    params = {k: v for k, v in params.items() if k not in ("format", "root") + HOLDOUT}   # the reader's options
    if not root:
        raise ParamsError("ingest: no --root given and no ingest.root in params")
    if csv:
        params["csv"] = csv
    if labels:   # words from the command line: a label set, or one value, as the format takes them
        params["labels"] = command_line_labels(fmt, labels)
    if fmt == "video":   # utterances come from the transcription step, with its own params section
        params["transcribe"] = section("transcribe", params_path)
        if cache:
            params["cache"] = cache
    elif cache:
        raise ParamsError(f"ingest: --cache is for the video format (its transcripts), not {fmt}")
    files = [params.get("csv")] + ([params["labels"]] if fmt in ("video", "subtitles") and params.get("labels") else [])
    check_writable(out, inputs=[root, *files, params_file(params_path)], stage="ingest")
    manifest = read_dataset(fmt, root, **params)
    if manifest.attrs["labels"]:
        require_training_split(manifest, root, manifest.attrs["labels"])
    else:
        print(f"ingest: {root}: no labels: the manifest serves predict and export, not training")
    attrs = dict(manifest.attrs)
    manifest, held = hold_out_valid(manifest, share, seed)
    manifest.attrs.update(attrs)
    write_manifest(manifest, out)
    listed = [p for p in (Path(csv) if csv else Path(root) / "manifest.csv",) if p.is_file()]
    skipped, dropped = manifest.attrs.get("skipped", []), manifest.attrs.get("dropped", {})
    counts = manifest["split"].value_counts().to_dict()
    write_record(out, "ingest", dict(params, format=fmt, root=str(root)), inputs=listed,
                 extra={"labels": manifest.attrs["labels"], "counts": counts, "skipped": skipped, "dropped": dropped,
                        "held_out_valid": {"seed": seed, "share": share, "dialogues": held} if held else None})
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"ingest: {len(manifest)} utterances, {manifest['dialogue_id'].nunique()} dialogues ({shown}) -> {out}")
    if skipped:
        print(f"ingest: skipped {len(skipped)} (listed in {out}.meta.json), e.g. {skipped[0]}")
    if dropped:
        print(f"ingest: dropped labels outside the label map: {dropped}")
    return manifest
