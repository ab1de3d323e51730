"""The manifest: one row per utterance, the only thing stages after ingest read.

Columns (DESIGN.md, data contracts): dataset, split, dialogue_id, utterance_id, turn, speaker,
text, label, media, start, end. ``start``/``end`` are seconds; empty means the whole file.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from model.data import SPLIT_NAMES, SPLITS, canonical_split, unknown_splits  # noqa: F401 (SPLITS: the manifest's)
from pipeline.errors import PipelineError
from pipeline.lineage import read_record, record_path, unreadable_file

COLUMNS = ["dataset", "split", "dialogue_id", "utterance_id", "turn", "speaker", "text", "label", "media",
           "start", "end"]
REQUIRED = ["dialogue_id", "utterance_id", "speaker", "text", "label", "media", "split"]


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
    return manifest_from_frame(read_csv_any_encoding(csv_path), csv_path, root if root is not None else csv_path.parent,
                               labels, dataset)


def manifest_from_frame(frame: pd.DataFrame, source, root, labels=None, dataset: str | None = None,
                        where=None) -> pd.DataFrame:
    """Rows with the manifest's columns (some optional, as :func:`read_generic` says) into a
    checked manifest; ``media`` relative to ``root``; ``where`` as :func:`validate` takes it."""
    root = Path(root)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ManifestError(f"{source}: missing column(s) {missing}; need {REQUIRED}")
    frame = frame.copy()
    if "dataset" not in frame.columns:
        frame["dataset"] = dataset or root.resolve().name
    if "turn" not in frame.columns:
        # counted within the dialogue as validate will read its id (" d1" and "d1 " are one dialogue)
        frame["turn"] = frame.groupby(frame["dialogue_id"].map(_cell).str.strip(), sort=False).cumcount().astype(str)
    for column in ("start", "end"):
        if column not in frame.columns:
            frame[column] = ""
    frame["media"] = [_media_path(root, _cell(m)) for m in frame["media"]]
    out = validate(frame[COLUMNS], source, labels, where=where)
    out.attrs["labels"] = list(labels) if labels else sorted(set(out["label"]) - {""})
    return out


QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2026": "..."})


def read_csv_any_encoding(path) -> pd.DataFrame:
    """A CSV of strings in UTF-8 or Windows-1252 (MELD's release archive: 0x92 for '), curly
    quotes made straight after parsing (before, a curly double quote would break the CSV).
    A missing, empty, undecodable or unparseable file, or a row with more cells than the
    header, is a ManifestError naming it (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: CSV not found")
    text = decode_text(path, path.read_bytes())
    if not text.strip():
        raise ManifestError(f"{path}: the CSV is empty (no header, no rows)")
    check_cells(path, text)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.ParserError as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from exc
    frame.columns = header_names(path, frame.columns)
    return frame.apply(lambda column: column.str.translate(QUOTES))


INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"   # zero-width characters str.strip() keeps


def header_names(path, columns) -> list[str]:
    """The header's names as meant: spaces of any kind around a name (a no-break space before
    ``dataset`` made it another column, and the user's values were replaced) are not part of it."""
    names = [str(c).strip().strip(INVISIBLE).strip() or str(c) for c in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ManifestError(f"{path}: line 1: column(s) {repeated} named more than once (spaces around a name "
                            f"are not part of it)")
    return names


# A well-formed UTF-8 sequence of two to four bytes (RFC 3629): Windows-1252 text rarely holds one.
UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
                            rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
                            rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}")


def decode_text(path, raw: bytes) -> str:
    """UTF-8 (with or without BOM); else Windows-1252 if no byte run in the file is UTF-8
    multi-byte text. A file that is UTF-8 but for a few bytes is an error naming the first
    bad byte, never a guess: decoding it all as Windows-1252 would garble its good text."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ManifestError(f"{path}: the file is UTF-16 text; save it as UTF-8")
    if (nul := raw.find(b"\0")) >= 0:
        raise ManifestError(f"{path}: {_byte_place(raw, nul)} is a NUL: not a text file, or a damaged one")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        if UTF8_MULTIBYTE.search(raw):
            raise ManifestError(f"{path}: {_byte_place(raw, exc.start)} is not UTF-8, though the file's other "
                                f"non-ASCII text is: fix that byte or save the file as UTF-8 again") from exc
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError as exc:   # 0x81, 0x8D, 0x8F, 0x90, 0x9D mean nothing in Windows-1252
        raise ManifestError(f"{path}: {_byte_place(raw, exc.start)} is neither UTF-8 nor Windows-1252 "
                            f"text") from exc


def _byte_place(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    return f"line {line}: byte 0x{raw[offset]:02x} at offset {offset}"


def check_cells(path, text: str) -> None:
    """A row with more cells than the header is an error: pandas would shift its columns (or,
    on the first row, make the first cells an index) without a word."""
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        width, line = len(next(rows)), rows.line_num + 1
        for row in rows:
            if len(row) > width:
                raise ManifestError(f"{path}: line {line}: {len(row)} cells but the header has {width}")
            line = rows.line_num + 1
    except csv.Error as exc:
        raise ManifestError(f"{path}: line {rows.line_num}: not a readable CSV ({exc})") from exc


def _resolved(path) -> Path:
    """``path`` made absolute, links followed; a symlink loop stays as it is, for the checks to name."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):   # a loop: RuntimeError before Python 3.13, OSError after
        return Path(os.path.abspath(path))


def _media_path(root: Path, media: str) -> str:
    """Relative to the working directory when under it (portable across clones), else absolute."""
    if not media:
        return ""
    path = _resolved(root / media)
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


STRIPPED = ("dataset", "split", "dialogue_id", "utterance_id", "speaker", "label")  # " neutral" is neutral


def _cell(value) -> str:
    """A cell as text; a missing value (None, NaN in a frame built in code) is empty."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def validate(frame: pd.DataFrame, source, labels=None, check_media: bool = True, where=None) -> pd.DataFrame:
    """Check a manifest; return it with typed columns (turn int, start/end float or NaN).

    Errors name ``source`` and the row's line; ``where`` (one entry per row, e.g.
    ``talk.srt: line 12``) names each row's origin instead, for rows a reader made from a
    dataset's own files."""
    src = str(source)
    if frame.empty:
        raise ManifestError(f"{src}: no utterances (a header without rows)")
    out = frame.reset_index(drop=True)
    where = list(where) if where is not None else [f"{src}: line {_line(i)}" for i in range(len(out))]
    for column in (c for c in STRIPPED if c in out.columns):
        out[column] = out[column].map(_cell).str.strip()
    _check_ids(out, where)
    split = out["split"].map(canonical_split)
    bad_split = out.index[split.isna()]
    if len(bad_split):
        found = unknown_splits(out.loc[bad_split, "split"])
        others = f" (unknown in this file: {found[:5]})" if len(found) > 1 else ""
        raise ManifestError(f"{where[bad_split[0]]}: unknown split {out.loc[bad_split[0], 'split']!r}{others}; "
                            f"expected one of {SPLIT_NAMES}")
    out["split"] = split
    if labels is not None:
        bad = out.index[~out["label"].isin(list(labels)) & (out["label"] != "")]   # "": unlabelled
        if len(bad):
            raise ManifestError(f"{where[bad[0]]}: label {out.loc[bad[0], 'label']!r} is not in the label set "
                                f"{list(labels)}")
    _check_label_case(out, where)
    out["turn"] = _integers(out["turn"], "turn", where)
    for column in ("start", "end"):
        out[column] = _times(out[column], column, where)
    _check_segments(out, where)
    _check_turns(out, where)
    if check_media:
        for index, media in out["media"].items():
            if not media or not os.path.isfile(media):
                problem = unreadable_file(media) if media else "not given"
                raise ManifestError(f"{where[index]}: media file {media!r} {problem}")
    return out.sort_values(["dialogue_id", "turn"], kind="stable").reset_index(drop=True)


def _check_label_case(out: pd.DataFrame, where: list[str]) -> None:
    """``Neutral`` beside ``neutral`` is one emotion written two ways, not two classes."""
    labels = pd.Series(out.loc[out["label"] != "", "label"].unique())
    clash = labels[labels.str.casefold().duplicated(keep=False)]
    if len(clash):
        first = out.index[out["label"] == clash.iloc[-1]][0]
        raise ManifestError(f"{where[first]}: label {clash.iloc[-1]!r} differs from {clash.iloc[0]!r} only in "
                            f"case; write each label one way")


def _check_turns(out: pd.DataFrame, where: list[str]) -> None:
    """A turn number twice in one dialogue leaves its order to chance."""
    twice = out.index[out.duplicated(["dialogue_id", "turn"])]
    if len(twice):
        row = out.loc[twice[0]]
        first = out.index[(out["dialogue_id"] == row["dialogue_id"]) & (out["turn"] == row["turn"])][0]
        raise ManifestError(f"{where[twice[0]]}: turn {row['turn']} of dialogue {row['dialogue_id']!r} is given "
                            f"twice (first on {_beside(where[first], where[twice[0]])})")


def _check_ids(out: pd.DataFrame, where: list[str]) -> None:
    for column in ("dialogue_id", "utterance_id", "speaker", "split"):
        empty = out.index[out[column] == ""]
        if len(empty):
            what = "empty dialogue id" if column == "dialogue_id" else f"empty {column}"
            raise ManifestError(f"{where[empty[0]]}: {what}")
    duplicated = out.index[out["utterance_id"].duplicated()]
    if len(duplicated):
        uid = out.loc[duplicated[0], "utterance_id"]
        first = out.index[out["utterance_id"] == uid][0]
        raise ManifestError(f"{where[duplicated[0]]}: duplicate utterance id {uid!r} "
                            f"(first on {_beside(where[first], where[duplicated[0]])})")


def _beside(place: str, other: str) -> str:
    """``place`` without its file name when ``other`` is in the same file: 'line 2'."""
    file = other.rsplit(": line ", 1)[0]
    return place.removeprefix(f"{file}: ")


def _integers(column: pd.Series, name: str, where: list[str]) -> pd.Series:
    text = column.map(_cell).str.strip()
    bad = text.index[~text.str.fullmatch(r"[+-]?\d+")]
    if len(bad):
        raise ManifestError(f"{where[bad[0]]}: {name} {column[bad[0]]!r} is not an integer")
    return text.astype(int)


def _times(column: pd.Series, name: str, where: list[str]) -> pd.Series:
    """Seconds, NaN where the cell is empty (the clip's start or end). Text that is no number,
    "nan" and "none" too, is an error: only an empty cell means the whole clip."""
    text = column.map(_cell).str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = text.index[(values.isna() & (text != "")) | np.isinf(values.fillna(0).to_numpy(float))]
    if len(bad):
        shown = column[bad[0]]
        hint = "; leave the cell empty for the whole clip" if text[bad[0]].lower() in ("nan", "none", "null") else ""
        kind = "finite time" if np.isinf(values[bad[0]]) else "number"
        raise ManifestError(f"{where[bad[0]]}: {name} {shown!r} is not a {kind}{hint}")
    return values


def _check_segments(out: pd.DataFrame, where: list[str]) -> None:
    """start >= 0 and end > start, an empty start being the clip's start (0)."""
    negative = out.index[out["start"].fillna(0) < 0]
    if len(negative):
        raise ManifestError(f"{where[negative[0]]}: start {out.loc[negative[0], 'start']} is negative")
    bad = out.index[out["end"].notna() & (out["start"].fillna(0) >= out["end"])]
    if len(bad):
        row = out.loc[bad[0]]
        start = row["start"] if row["start"] == row["start"] else "0 (empty: the clip's start)"
        raise ManifestError(f"{where[bad[0]]}: start {start} is not before end {row['end']}")


def write_manifest(frame: pd.DataFrame, path) -> None:
    """Media paths are written relative to the manifest's own folder, so the manifest works from
    any working directory and moves with its clips."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame[COLUMNS].copy()
    here = path.parent.resolve()
    out["media"] = [Path(os.path.relpath(_resolved(m), here)).as_posix() if m else "" for m in out["media"]]
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
    if not record_path(path).is_file():
        raise ManifestError(f"{record_path(path)}: not found; write the manifest with `python -m pipeline ingest`")
    labels = read_record(path, "labels")["labels"]
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ManifestError(f"{record_path(path)}: labels must be a list of class names, not {labels!r}")
    frame, classes = load_manifest(path), labels
    require_training_split(frame, path, classes)
    return frame, classes
