"""Dataset readers, looked up by format name: each turns a dataset's own layout into a manifest."""
from __future__ import annotations

import inspect
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.labels import MELD_EMOTIONS, MELD_SENTIMENTS
from pipeline.lineage import read_json_object
from pipeline.manifest import QUOTES, ManifestError, decode_text, manifest_from_frame, read_csv_any_encoding, read_generic


def read_demo(root) -> pd.DataFrame:
    """The built-in demo corpus (``python -m pipeline demo``): the generic layout plus its labels."""
    root = Path(root)
    info_path = root / "corpus.json"
    if not info_path.is_file():
        raise ManifestError(f"{info_path}: not a demo corpus (run `python -m pipeline demo` first)")
    labels = read_json_object(info_path, "demo corpus description", required=("labels",))["labels"]
    return read_generic(root / "manifest.csv", root, labels=labels, dataset="demo")


def read_generic_root(root, csv=None, labels=None, dataset=None) -> pd.DataFrame:
    """A folder of clips plus a CSV (``manifest.csv`` in the folder unless ``csv`` names another)."""
    root = Path(root)
    if labels is not None and (isinstance(labels, str) or not all(isinstance(x, str) for x in labels)):
        raise ManifestError(f"generic: labels must be a list of class names, not {labels!r}")
    return read_generic(Path(csv) if csv else root / "manifest.csv", root, labels=labels or None, dataset=dataset)


MELD_SPLITS = {  # split: (CSV, clip folder)
    "train": ("train_sent_emo.csv", "train_splits"),
    "valid": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
MELD_COLUMNS = {"Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"}


def read_meld_transcripts(folder) -> pd.DataFrame:
    """MELD's three CSVs alone (no clips): split (train / valid / test), dialogue_id (the split's
    name and MELD's Dialogue_ID), turn, speaker, text, label; either encoding MELD ships in."""
    parts = []
    for split, (csv_name, _) in MELD_SPLITS.items():
        path = Path(folder) / csv_name
        if not path.is_file():
            raise ManifestError(f"{path}: MELD CSV not found (the folder holds train_sent_emo.csv, "
                                f"dev_sent_emo.csv and test_sent_emo.csv)")
        frame = read_csv_any_encoding(path)
        missing = sorted(MELD_COLUMNS - set(frame.columns))
        if missing:
            raise ManifestError(f"{path}: not MELD's layout, missing column(s) {missing}")
        prefix = csv_name.split("_")[0]
        parts.append(pd.DataFrame({"split": split, "dialogue_id": prefix + "_" + frame["Dialogue_ID"].astype(str),
                                   "turn": frame["Utterance_ID"].astype(int), "speaker": frame["Speaker"].astype(str),
                                   "text": frame["Utterance"].astype(str),
                                   "label": frame["Emotion"].astype(str).str.strip().str.lower()}))
    return pd.concat(parts, ignore_index=True)


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
        missing = sorted(MELD_COLUMNS - set(frame.columns))
        if missing:
            raise ManifestError(f"{csv}: not a MELD CSV (no column(s) {missing})")
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
                         "media": clip.relative_to(root).as_posix(), "where": f"{csv}: line {line}"})
    label_set = MELD_EMOTIONS if labels == "emotion" else MELD_SENTIMENTS
    return _manifest_from_rows(rows, root, "meld", label_set, skipped)


def _manifest_from_rows(rows, root: Path, dataset: str, labels, skipped) -> pd.DataFrame:
    """A reader's rows (manifest columns, media relative to ``root``, and ``where``: the file
    and line each came from, which the errors name) into a checked manifest."""
    if not rows:
        raise ManifestError(f"{root}: no utterance with a clip found ({len(skipped)} skipped)")
    frame = pd.DataFrame(rows)
    where = frame.pop("where")
    frame["text"] = frame["text"].map(lambda t: "" if t is None or t != t else str(t).translate(QUOTES))
    manifest = manifest_from_frame(frame, root, root, labels=labels, dataset=dataset, where=where)
    manifest.attrs["skipped"] = skipped
    return manifest


IEMOCAP_CODES = {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry", "exc": "excited", "fru": "frustrated"}
IEMOCAP_MAPS = {
    "6": {code: name for code, name in IEMOCAP_CODES.items()},
    "4": {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"},
}
_TURN = re.compile(r"^(\S+)\s+\[(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\]:\s*(.*)$")
_EVAL = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t")


def _lines(path: Path) -> list[str]:
    return decode_text(path, path.read_bytes()).splitlines()


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
            labels = {m.group(3): m.group(4) for m in map(_EVAL.match, _lines(evaluation)) if m}
            turns = [(m, n) for n, m in enumerate(map(_TURN.match, _lines(transcript)), start=1) if m]
            for m, number in sorted(turns, key=lambda item: float(item[0].group(2))):
                uid, start, end, text = m.group(1), float(m.group(2)), float(m.group(3)), m.group(4)
                code = labels.get(uid, "xxx")
                if code not in mapping:
                    dropped[code] += 1
                    continue
                rows.append({"dialogue_id": dialog, "utterance_id": uid, "speaker": uid.rsplit("_", 1)[1][0],
                             "text": text.strip(), "label": mapping[code], "media": video.relative_to(root).as_posix(),
                             "start": start, "end": end, "session": int(session.name[-1]),
                             "where": f"{transcript}: line {number}"})
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
        table = read_csv_any_encoding(split_file)
        if not {"dialogue_id", "split"} <= set(table.columns):
            raise ManifestError(f"{split_file}: needs the columns dialogue_id and split")
        lookup = dict(zip(table["dialogue_id"].str.strip(), table["split"].str.strip()))
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
    from pipeline.subtitles import conversation, subtitle_for, videos_in

    root = Path(root)
    table = cue_labels(labels) if labels else {}
    videos = videos_in(root)
    _check_unique_stems(videos)
    parts, where, skipped = [], [], []
    for video in videos:
        subtitles = subtitle_for(video)
        if subtitles is None:
            skipped.append(f"{video.name}: no .srt or .vtt beside it")
            continue
        frame, counts = conversation(video, subtitles, split, table)
        if subtitles.suffix.lower() == ".srt" and video.with_suffix(".vtt").is_file():
            skipped.append(f"{video.with_suffix('.vtt').name}: not read ({subtitles.name} beside it is)")
        parts.append(frame.assign(media=video.relative_to(root).as_posix()))   # _manifest_from_rows adds root
        where += frame.attrs["where"]
        skipped += [f"{subtitles.name}: {n} {what.replace('_', ' ')}" for what, n in counts.items()]
    if not parts:
        raise ManifestError(f"{root}: no video with subtitles beside it ({len(videos)} videos)")
    rows = pd.concat(parts).assign(where=where)
    unmatched = sorted(set(table) - set(rows["utterance_id"]))
    if unmatched:
        skipped.append(f"{labels}: {len(unmatched)} labelled id(s) match no cue, e.g. {unmatched[0]!r}")
    return _manifest_from_rows(rows.to_dict("records"), root, "subtitles", sorted(set(rows["label"]) - {""}), skipped)


def read_video(root, labels: str | None = None, split: str | None = None, transcribe: dict | None = None,
               cache: str = "data/cache") -> pd.DataFrame:
    """A folder of recordings and nothing else: each video is one conversation, its utterances,
    words and speakers found by the transcription step (``pipeline.transcripts``, cached in
    ``cache``, settings from the ``transcribe`` params section). ``labels``: an optional CSV of
    dialogue, start, end, label (and split), matched to the utterances by time; labelled rows
    default to ``train``, unlabelled ones to ``test`` (for predict and export)."""
    from pipeline.subtitles import RECORDINGS, videos_in
    from pipeline.transcripts import (conversation_rows, label_rows, labels_by_time, match_dialogues,
                                      transcribe as run_transcription)

    root = Path(root)
    videos = videos_in(root)
    _check_unique_stems(videos)
    if not videos:
        raise ManifestError(f"{root}: no {RECORDINGS} in the folder")
    results = run_transcription(videos, transcribe or {}, cache)
    rows, skipped = [], []
    for video in videos:
        result = results[str(video)]
        if result.vector is None:
            skipped.append(f"{video.name}: {result.message or result.error}")
            continue
        rows += conversation_rows(video, result, video.relative_to(root).as_posix(), split or "test")
    if not rows:
        raise ManifestError(f"{root}: no speech found in any of its {len(videos)} videos ({'; '.join(skipped)})")
    frame = pd.DataFrame(rows)
    if labels:
        spans, unmatched = match_dialogues(labels, labels_by_time(labels), videos)
        frame, matched, conflicts = label_rows(frame.assign(split=split or "train"), spans, labels)
        frame.loc[frame["label"] == "", "split"] = split or "test"   # unlabelled turns: context only
        notes = unmatched + conflicts
        for note in notes[:5]:
            print(f"ingest: {note}")
        if len(notes) > 5:
            print(f"ingest: ... and {len(notes) - 5} more such notes (all in the manifest's record, as skipped)")
        skipped += unmatched + conflicts
        skipped += [f"{labels}: {len(frame) - matched} of {len(frame)} utterances overlap no labelled span"] \
            if matched < len(frame) else []
    frame["where"] = [f"{r.dialogue_id} (transcribed), utterance {r.turn}" for r in frame.itertuples()]
    return _manifest_from_rows(frame.to_dict("records"), root, "video", sorted(set(frame["label"]) - {""}), skipped)


def cue_labels(path) -> dict:
    """utterance_id -> (label, split or None) from a CSV; a repeated id is an error naming its line."""
    if not isinstance(path, (str, Path)):
        raise ManifestError(f"subtitles: labels is a CSV of utterance_id, label (and split), not {path!r}")
    frame = read_csv_any_encoding(path)
    if not {"utterance_id", "label"} <= set(frame.columns):
        raise ManifestError(f"{path}: needs the columns utterance_id and label (and optionally split)")
    table, first = {}, {}
    for i, row in frame.iterrows():
        uid = row["utterance_id"].strip()
        if uid in table:
            raise ManifestError(f"{path}: line {i + 2}: duplicate utterance id {uid!r} (first on line {first[uid]})")
        split = row["split"].strip() if "split" in frame.columns else ""
        table[uid], first[uid] = (row["label"].strip(), split or None), i + 2
    return table


def _check_unique_stems(videos) -> None:
    from pipeline.subtitles import stem_clash

    clash = stem_clash(videos)
    if clash:
        first, video = clash
        raise ManifestError(f"{video}: has the name of {first.name} (utterance ids are <name>_<cue>, and the "
                            f"subtitles {video.stem}.srt/.vtt would serve both); rename one")


READERS = {"demo": read_demo, "generic": read_generic_root, "meld": read_meld, "iemocap": read_iemocap,
           "subtitles": read_subtitles, "video": read_video}


# What ``ingest --labels`` means to each reader: a label set (a list), one value, or nothing.
LABELS_OPTION = {"generic": ("list", "the label set"), "meld": ("one", "emotion or sentiment"),
                 "subtitles": ("one", "a CSV of utterance_id, label (and split)"),
                 "video": ("one", "a CSV of dialogue, start, end, label (and split)"),
                 "demo": (None, "the demo's labels come from its corpus.json"),
                 "iemocap": (None, "IEMOCAP's labels come from label_map: 6 or 4")}


def command_line_labels(fmt: str, values: list[str]):
    """``--labels`` words as the reader's ``labels`` option, or an error saying what it takes."""
    _check_format(fmt)
    kind, meaning = LABELS_OPTION[fmt]
    if kind == "list":
        return list(values)
    if kind == "one" and len(values) == 1:
        return values[0]
    if kind == "one":
        raise ManifestError(f"ingest: --labels for the {fmt} format is one value ({meaning}), not {values}")
    raise ManifestError(f"ingest: the {fmt} format takes no --labels ({meaning})")


def _check_format(fmt: str) -> None:
    if fmt not in READERS:
        raise ManifestError(f"unknown dataset format {fmt!r}; known: {sorted(READERS)}")


def read_dataset(fmt: str, root, **options) -> pd.DataFrame:
    """The named reader on ``root``; an option it does not take is an error naming it."""
    _check_format(fmt)
    reader = READERS[fmt]
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ManifestError(f"ingest: the {fmt} reader takes no option(s) {unknown}; its options: {accepted}")
    if not Path(root).exists():
        raise ManifestError(f"{root}: dataset folder not found")
    return reader(root, **options)

