"""The manifest: one row per utterance, the only thing stages after ingest read.

Columns (DESIGN.md, data contracts): dataset, split, dialogue_id, utterance_id, turn, speaker,
text, label, media, start, end. ``start``/``end`` are seconds; empty means the whole file.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

COLUMNS = ["dataset", "split", "dialogue_id", "utterance_id", "turn", "speaker", "text", "label", "media",
           "start", "end"]
REQUIRED = ["dialogue_id", "utterance_id", "speaker", "text", "label", "media", "split"]
SPLITS = ("train", "valid", "test")


class ManifestError(PipelineError):
    """A manifest or clip-list problem, naming the file and (1-based, header = 1) line."""


def _line(index: int) -> int:
    return int(index) + 2  # the header is line 1


def read_generic(csv_path, root=None, labels=None, dataset: str | None = None) -> pd.DataFrame:
    """A user's own clips: a CSV with the manifest columns, media paths relative to ``root``.

    ``dataset``, ``turn``, ``start`` and ``end`` may be left out: turn defaults to the row
    order within a dialogue, start/end to the whole file. Raises :class:`ManifestError`.
    """
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    frame = read_csv_any_encoding(csv_path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ManifestError(f"{csv_path}: missing column(s) {missing}; need {REQUIRED}")
    if "dataset" not in frame.columns:
        frame["dataset"] = dataset or root.resolve().name
    if "turn" not in frame.columns:
        frame["turn"] = frame.groupby("dialogue_id", sort=False).cumcount().astype(str)
    for column in ("start", "end"):
        if column not in frame.columns:
            frame[column] = ""
    frame["media"] = [_media_path(root, m) for m in frame["media"]]
    out = validate(frame[COLUMNS], csv_path, labels)
    out.attrs["labels"] = list(labels) if labels else sorted(set(out["label"]) - {""})
    return out


QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2026": "..."})


def read_csv_any_encoding(path) -> pd.DataFrame:
    """A CSV of strings in UTF-8 or Windows-1252 (MELD's release archive: 0x92 for '), curly
    quotes made straight after parsing (before, a curly double quote would break the CSV).
    A missing, empty or unparseable file is a ManifestError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: CSV not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    if not text.strip():
        raise ManifestError(f"{path}: the CSV is empty (no header, no rows)")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from exc
    return frame.apply(lambda column: column.str.translate(QUOTES))


def _media_path(root: Path, media: str) -> str:
    """Relative to the working directory when under it (portable across clones), else absolute."""
    if not media:
        return ""
    path = (root / media).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def validate(frame: pd.DataFrame, source, labels=None, check_media: bool = True) -> pd.DataFrame:
    """Check a manifest; return it with typed columns (turn int, start/end float or NaN)."""
    src = str(source)
    if frame.empty:
        raise ManifestError(f"{src}: no utterances (a header without rows)")
    for column in ("dialogue_id", "utterance_id", "speaker", "split"):
        empty = frame.index[frame[column].astype(str).str.strip() == ""]
        if len(empty):
            what = "empty dialogue id" if column == "dialogue_id" else f"empty {column}"
            raise ManifestError(f"{src}: line {_line(empty[0])}: {what}")
    duplicated = frame.index[frame["utterance_id"].duplicated()]
    if len(duplicated):
        uid = frame.loc[duplicated[0], "utterance_id"]
        first = frame.index[frame["utterance_id"] == uid][0]
        raise ManifestError(f"{src}: line {_line(duplicated[0])}: duplicate utterance id {uid!r} "
                            f"(first on line {_line(first)})")
    bad_split = frame.index[~frame["split"].isin(SPLITS)]
    if len(bad_split):
        raise ManifestError(f"{src}: line {_line(bad_split[0])}: unknown split "
                            f"{frame.loc[bad_split[0], 'split']!r}; expected one of {list(SPLITS)}")
    if labels is not None:
        bad = frame.index[~frame["label"].isin(list(labels)) & (frame["label"] != "")]   # "": unlabelled
        if len(bad):
            raise ManifestError(f"{src}: line {_line(bad[0])}: label {frame.loc[bad[0], 'label']!r} "
                                f"is not in the label set {list(labels)}")
    out = frame.copy()
    try:
        out["turn"] = out["turn"].astype(int)
    except ValueError as exc:
        raise ManifestError(f"{src}: turn must be an integer ({exc})") from exc
    for column in ("start", "end"):
        raw = out[column].astype(str).str.strip().replace("nan", "")
        values = pd.to_numeric(raw.where(raw != ""), errors="coerce")
        bad = out.index[values.isna() & (raw != "")]
        if len(bad):
            raise ManifestError(f"{src}: line {_line(bad[0])}: {column} {out.loc[bad[0], column]!r} is not a number")
        infinite = out.index[np.isinf(values.fillna(0).to_numpy(float))]
        if len(infinite):
            raise ManifestError(f"{src}: line {_line(infinite[0])}: {column} {out.loc[infinite[0], column]!r} "
                                f"is not a finite time")
        out[column] = values
    negative = out.index[out["start"].fillna(0) < 0]
    if len(negative):
        raise ManifestError(f"{src}: line {_line(negative[0])}: start {out.loc[negative[0], 'start']} is negative")
    both = out["start"].notna() & out["end"].notna()
    bad_segment = out.index[both & (out["start"] >= out["end"])]
    if len(bad_segment):
        row = out.loc[bad_segment[0]]
        raise ManifestError(f"{src}: line {_line(bad_segment[0])}: start {row['start']} is not before "
                            f"end {row['end']}")
    if check_media:
        for index, media in out["media"].items():
            if not media or not os.path.isfile(media):
                raise ManifestError(f"{src}: line {_line(index)}: media file {media!r} not found")
    return out.sort_values(["dialogue_id", "turn"], kind="stable").reset_index(drop=True)


def write_manifest(frame: pd.DataFrame, path) -> None:
    """Media paths are written relative to the manifest's own folder, so the manifest works from
    any working directory and moves with its clips."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame[COLUMNS].copy()
    here = path.parent.resolve()
    out["media"] = [Path(os.path.relpath(Path(m).resolve(), here)).as_posix() if m else "" for m in out["media"]]
    out.to_csv(path, index=False)


def load_manifest(path) -> pd.DataFrame:
    """Read a manifest written by ``ingest`` (media existence is checked by the extractors)."""
    frame = read_csv_any_encoding(path)
    if "media" in frame.columns:
        frame["media"] = [_media_path(Path(path).parent, m) for m in frame["media"]]
    return validate(frame, path, check_media=False)


def require_training_split(frame: pd.DataFrame, source, classes) -> None:
    """Extractors and the model fit on labelled training rows: none is an error up front."""
    labelled_train = (frame["split"] == "train") & frame["label"].isin(list(classes))
    if not labelled_train.any():
        raise ManifestError(f"{source}: no labelled utterance in the train split "
                            f"(splits: {frame['split'].value_counts().to_dict()}); nothing to fit on")


def training_parts(manifest: pd.DataFrame, seed: int = 0):
    """Boolean masks (train, valid): ``model.data.holdout_valid``, so that an extractor and the
    model hold out the same dialogues for the same seed."""
    from model.data import holdout_valid

    return holdout_valid(manifest["split"].to_numpy(), manifest["dialogue_id"].to_numpy(), seed)


def read_manifest(path) -> tuple[pd.DataFrame, list[str]]:
    """The manifest and its class names (from ingest's lineage record), checked for a training split."""
    from pipeline.lineage import read_record, record_path

    if not record_path(path).is_file():
        raise ManifestError(f"{record_path(path)}: not found; write the manifest with `python -m pipeline ingest`")
    frame, classes = load_manifest(path), list(read_record(path)["labels"])
    require_training_split(frame, path, classes)
    return frame, classes
