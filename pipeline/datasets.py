"""Dataset readers, looked up by format name: each turns a dataset's own layout into a manifest."""
from __future__ import annotations

import inspect
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.labels import MELD_EMOTIONS, MELD_SENTIMENTS
from pipeline.manifest import ManifestError, read_csv_any_encoding, read_generic


def read_demo(root) -> pd.DataFrame:
    """The built-in demo corpus (``python -m pipeline demo``): the generic layout plus its labels."""
    root = Path(root)
    info_path = root / "corpus.json"
    if not info_path.is_file():
        raise ManifestError(f"{info_path}: not a demo corpus (run `python -m pipeline demo` first)")
    labels = json.loads(info_path.read_text())["labels"]
    return read_generic(root / "manifest.csv", root, labels=labels, dataset="demo")


def read_generic_root(root, csv=None, labels=None, dataset=None) -> pd.DataFrame:
    """A folder of clips plus a CSV (``manifest.csv`` in the folder unless ``csv`` names another)."""
    root = Path(root)
    return read_generic(Path(csv) if csv else root / "manifest.csv", root, labels=labels or None, dataset=dataset)


MELD_SPLITS = {  # split: (CSV, clip folder)
    "train": ("train_sent_emo.csv", "train_splits"),
    "valid": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
def read_meld(root, labels: str = "emotion") -> pd.DataFrame:
    """MELD's release: the three CSVs beside the clip folders; clips dia{D}_utt{U}.mp4 (test clips
    may carry a final_videos_test prefix). Rows whose clip is missing are skipped and reported
    in ``attrs["skipped"]``; ``labels`` is emotion (7 classes) or sentiment (3)."""
    root = Path(root)
    if labels not in ("emotion", "sentiment"):
        raise ManifestError(f"meld: labels must be emotion or sentiment, not {labels!r}")
    rows, skipped = [], []
    for split, (csv_name, folder) in MELD_SPLITS.items():
        csv = root / csv_name
        if not csv.is_file():
            raise ManifestError(f"{csv}: MELD CSV not found")
        frame = read_csv_any_encoding(csv)
        for line, row in enumerate(frame.itertuples(index=False), start=2):
            d, u = row.Dialogue_ID, row.Utterance_ID
            candidates = [root / folder / f"dia{d}_utt{u}.mp4", root / folder / f"final_videos_testdia{d}_utt{u}.mp4"]
            clip = next((c for c in candidates if c.is_file()), None)
            if clip is None:
                skipped.append(f"{csv.name}:{line}: dia{d}_utt{u}.mp4 missing from {folder}/")
                continue
            rows.append({"split": split, "dialogue_id": f"{split}_dia{d}", "utterance_id": f"{split}_dia{d}_utt{u}",
                         "turn": u, "speaker": row.Speaker, "text": row.Utterance,
                         "label": (row.Emotion if labels == "emotion" else row.Sentiment).lower(),
                         "media": clip.relative_to(root).as_posix()})
    label_set = MELD_EMOTIONS if labels == "emotion" else MELD_SENTIMENTS
    return _manifest_from_rows(rows, root, "meld", label_set, skipped)


def _manifest_from_rows(rows, root: Path, dataset: str, labels, skipped) -> pd.DataFrame:
    import tempfile

    if not rows:
        raise ManifestError(f"{root}: no utterance with a clip found ({len(skipped)} skipped)")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / f"{dataset}.csv"
        pd.DataFrame(rows).to_csv(csv, index=False)
        manifest = read_generic(csv, root, labels=labels, dataset=dataset)
    manifest.attrs["skipped"] = skipped
    return manifest


IEMOCAP_CODES = {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry", "exc": "excited", "fru": "frustrated"}
IEMOCAP_MAPS = {
    "6": {code: name for code, name in IEMOCAP_CODES.items()},
    "4": {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"},
}
_TURN = re.compile(r"^(\S+)\s+\[(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\]:\s*(.*)$")
_EVAL = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t")


def read_iemocap(root, label_map: str = "6", split: str = "sessions", split_file: str | None = None,
                 valid_share: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """IEMOCAP's release: Session{1..5}/dialog/{avi/DivX/*.avi, transcriptions/*.txt, EmoEvaluation/*.txt}.

    Utterances are [start, end] segments of the dialog video. ``label_map`` 6 (the paper's classes)
    or 4 (excited merged into happy); other labels are dropped and counted in ``attrs["dropped"]``.
    ``split``: sessions (1-4 train with a seeded valid part by dialogue, 5 test) or file (the
    dialogue_id -> split of ``split_file``, e.g. ../shared/data/iemocap_text's CSV)."""
    root = Path(root)
    mapping = IEMOCAP_MAPS.get(str(label_map))
    if mapping is None:
        raise ManifestError(f"iemocap: label_map must be 6 or 4, not {label_map!r}")
    rows, dropped, skipped = [], Counter(), []
    for session in sorted(root.glob("Session*")):
        for transcript in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
            dialog = transcript.stem
            video = session / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
            evaluation = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
            if not video.is_file() or not evaluation.is_file():
                skipped.append(f"{dialog}: {'video' if not video.is_file() else 'EmoEvaluation'} missing")
                continue
            labels = {m.group(3): m.group(4) for m in map(_EVAL.match, evaluation.read_text(errors="replace").splitlines()) if m}
            turns = [m for m in map(_TURN.match, transcript.read_text(errors="replace").splitlines()) if m]
            for m in sorted(turns, key=lambda m: float(m.group(2))):
                uid, start, end, text = m.group(1), float(m.group(2)), float(m.group(3)), m.group(4)
                code = labels.get(uid, "xxx")
                if code not in mapping:
                    dropped[code] += 1
                    continue
                rows.append({"dialogue_id": dialog, "utterance_id": uid, "speaker": uid.rsplit("_", 1)[1][0],
                             "text": text.strip(), "label": mapping[code], "media": video.relative_to(root).as_posix(),
                             "start": start, "end": end, "session": int(session.name[-1])})
    if not rows:
        raise ManifestError(f"{root}: no IEMOCAP utterance found (Session*/dialog/...)")
    frame = pd.DataFrame(rows)
    frame["turn"] = frame.groupby("dialogue_id").cumcount()
    if split == "sessions":
        frame["split"] = np.where(frame["session"] == 5, "test", "train")
        dialogs = sorted(frame.loc[frame["split"] == "train", "dialogue_id"].unique())
        held = np.random.default_rng(seed).choice(dialogs, max(1, round(valid_share * len(dialogs))), replace=False) \
            if len(dialogs) >= 2 else []
        frame.loc[frame["dialogue_id"].isin(held), "split"] = "valid"
    elif split == "file":
        if not split_file or not Path(split_file).is_file():
            raise ManifestError(f"iemocap: split=file needs split_file, a CSV with dialogue_id and split ({split_file})")
        table = pd.read_csv(split_file, dtype=str)
        lookup = dict(zip(table["dialogue_id"], table["split"]))
        unknown = sorted(set(frame["dialogue_id"]) - set(lookup))
        if unknown:
            raise ManifestError(f"{split_file}: no split for dialogue(s) {unknown[:5]}")
        frame["split"] = frame["dialogue_id"].map(lookup)
    else:
        raise ManifestError(f"iemocap: split must be sessions or file, not {split!r}")
    label_set = sorted(set(mapping.values()), key=list(IEMOCAP_CODES.values()).index)
    manifest = _manifest_from_rows(frame.drop(columns="session").to_dict("records"), root, "iemocap", label_set, skipped)
    manifest.attrs["dropped"] = dict(dropped)
    return manifest


def read_subtitles(root, labels: str | None = None, split: str = "test") -> pd.DataFrame:
    """A folder of recordings, each video with an ``.srt`` or ``.vtt`` of the same name beside it:
    one conversation per video, one utterance per cue (``pipeline.subtitles``). ``labels``: an
    optional CSV of utterance_id, label (and split) for the cues (ids are ``<video>_<cue index>``);
    without it the utterances have no label and the split ``split``."""
    from pipeline.subtitles import VIDEO_SUFFIXES, conversation, subtitle_for

    root = Path(root)
    table = {}
    if labels:
        frame = read_csv_any_encoding(labels)
        if not {"utterance_id", "label"} <= set(frame.columns):
            raise ManifestError(f"{labels}: needs the columns utterance_id and label (and optionally split)")
        table = {u: (lab, frame["split"][i] if "split" in frame.columns else None)
                 for i, (u, lab) in enumerate(zip(frame["utterance_id"], frame["label"]))}
    parts, skipped = [], []
    videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    for video in videos:
        subtitles = subtitle_for(video)
        if subtitles is None:
            skipped.append(f"{video.name}: no .srt or .vtt beside it")
            continue
        frame, counts = conversation(video, subtitles, split, table)
        parts.append(frame)
        skipped += [f"{subtitles.name}: {n} {what.replace('_', ' ')}" for what, n in counts.items()]
    if not parts:
        raise ManifestError(f"{root}: no video with subtitles beside it ({len(videos)} videos)")
    manifest = _manifest_from_rows(pd.concat(parts).to_dict("records"), root, "subtitles",
                                   sorted(set(pd.concat(parts)["label"]) - {""}), skipped)
    return manifest


READERS = {"demo": read_demo, "generic": read_generic_root, "meld": read_meld, "iemocap": read_iemocap,
           "subtitles": read_subtitles}


def read_dataset(fmt: str, root, **options) -> pd.DataFrame:
    """The named reader on ``root``; an option it does not take is an error naming it."""
    if fmt not in READERS:
        raise ManifestError(f"unknown dataset format {fmt!r}; known: {sorted(READERS)}")
    reader = READERS[fmt]
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ManifestError(f"ingest: the {fmt} reader takes no option(s) {unknown}; its options: {accepted}")
    if not Path(root).exists():
        raise ManifestError(f"{root}: dataset folder not found")
    return reader(root, **options)

