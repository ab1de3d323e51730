"""Recordings as conversations with nothing but the video: the transcription step before the
extractors (``extractors.speech``: voice activity, Whisper's words, utterances, speakers).

Each recording's transcript is cached like an extractor's output, keyed by the recording's
content hash and the ``transcribe`` params (``pipeline.cache``: resumable, atomic, local workers
or a Dask cluster), and becomes ordinary manifest rows, ``<recording>_<nnnn>`` ids, so every
later stage is unchanged. What was heard is also written as SRT or WebVTT with ``NAME:``
prefixes, which a person can correct and feed back with ``--subtitles``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from extractors.speech import (COVERED, OVERLAP_MIN_S, OVERLAP_NEAR_S, OVERLAP_P, REPEATS, SAMPLING_SEED, SILENT,
                               UNLIKELY, TranscribeConfig, Transcriber)
from pipeline.cache import extract_utterances
from pipeline.errors import ParamsError, PipelineError
from pipeline.manifest import COLUMNS, ManifestError, read_csv_any_encoding
from pipeline.params import configs


@dataclass(frozen=True)
class TranscribeStage:
    """How the step runs; changes no transcript."""
    workers: int = 1
    scheduler: str | None = None


RUNTIME_ONLY = ("cpu_threads", "device")   # CTranslate2 threads and device: not part of the cache key


class NoSpeech(PipelineError):
    pass


def transcribe_configs(params: dict) -> tuple[TranscribeConfig, TranscribeStage]:
    config, stage = configs("transcribe", params, TranscribeConfig, TranscribeStage)
    if config.language != "auto":   # Whisper's own check comes only inside a worker, as a traceback
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if config.language not in _LANGUAGE_CODES:
            raise ParamsError(f"params transcribe.language: {config.language!r} is not auto or a language code "
                              f"Whisper knows (en, fr, de, es, ...)")
        if config.model.endswith(".en") and config.language != "en":   # else Whisper silently hears English
            raise ParamsError(f"params transcribe.language: {config.language!r} needs a multilingual model; "
                              f"transcribe.model {config.model!r} is English only (use base)")
    return config, stage


def transcribe(videos, params: dict, cache_root, workers=None, progress: bool = True, scheduler=None) -> dict:
    """{video path: Result} for each recording (``Result.info["utterances"]``; ``error`` "no_speech"
    where none was found), computed once per recording and params, then read from the cache."""
    config, stage = transcribe_configs(params)
    frame = pd.DataFrame({"utterance_id": [str(v) for v in videos], "media": [str(v) for v in videos],
                          "start": float("nan"), "end": float("nan")})
    key = {k: v for k, v in asdict(config).items() if k not in RUNTIME_ONLY}
    key["sampling_seed"] = SAMPLING_SEED   # entries from before the seed was fixed are not reused
    key["timeline"] = "container"   # times since the file's start; older entries counted from the first audio sample
    if config.whisper_batch:   # entries from before failing stretches were decoded again are not reused
        key["batch"] = {"decoded again": [REPEATS, UNLIKELY, SILENT, COVERED]}
    if config.overlaps != "none":   # how overlaps are found and placed (2026-12-07): other rules, other entries
        key["overlap_rule"] = [OVERLAP_P, OVERLAP_MIN_S, OVERLAP_NEAR_S, "own turns apart; every turn holding one marked"]
    factory = partial(Transcriber, config, Path(cache_root) / "weights")   # the joined Whisper weights live here
    results, _ = extract_utterances(frame, factory, "transcribe", key, Path(cache_root) / "transcribe",
                                    workers=workers or stage.workers, progress=progress,
                                    scheduler=scheduler or stage.scheduler)
    return results


def conversation_rows(video: Path, result, media: str, split: str = "test") -> list[dict]:
    """A recording's utterances as manifest rows (dialogue = the recording's name)."""
    stem = Path(video).stem
    return [{"dataset": "video", "split": split, "dialogue_id": stem, "utterance_id": f"{stem}_{i:04d}", "turn": i,
             "speaker": one_line(u["speaker"]), "text": one_line(u["text"]), "label": "", "media": media, "start": u["start"],
             "end": u["end"]} for i, u in enumerate(result.info.get("utterances", []))]


def check_speech(video, result) -> None:
    """A recording that gave no utterance is a clear error, not rows of empty text."""
    if result.vector is None:
        raise NoSpeech(result.message or f"{video}: {result.error or 'no transcript'}")


def labels_by_time(path) -> pd.DataFrame:
    """The labels CSV of a video corpus: dialogue, start, end, label (and optionally split)."""
    frame = read_csv_any_encoding(path)
    missing = [c for c in ("dialogue", "start", "end", "label") if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; need dialogue, start, end, label (and split)")
    for column in ("start", "end"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values < 0)
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise ManifestError(f"{path}: line {line}: {column} {frame[column][bad].iloc[0]!r} is not a time in seconds")
        frame[column] = values
    if (frame["end"] <= frame["start"]).any():
        line = int((frame["end"] <= frame["start"]).to_numpy().nonzero()[0][0]) + 2
        raise ManifestError(f"{path}: line {line}: end is not after start")
    for column in ("dialogue", "label", "split"):   # ' happy' is happy, as in a manifest
        if column in frame.columns:
            frame[column] = frame[column].str.strip()
    frame["line"] = frame.index + 2
    return frame


def match_dialogues(path, labels: pd.DataFrame, videos) -> tuple[pd.DataFrame, list[str]]:
    """The labels' dialogues as the recordings' names: ``talk`` or the file name ``talk.mp4``
    (spaces around either stripped on reading). Rows that name no recording are dropped, each
    named in the returned notes (a typo, ``tlak`` or ``Talk``, was dropped without a word)."""
    stems = {Path(v).stem for v in videos}
    names = {Path(v).name: Path(v).stem for v in videos}
    labels = labels.assign(dialogue=[names.get(d, d) for d in labels["dialogue"]])
    unmatched = labels[~labels["dialogue"].isin(stems)]
    notes = [f"{path}: line {r.line}: dialogue {r.dialogue!r} is no recording here ({', '.join(sorted(stems)[:5])}); "
             f"its span is not used" for r in unmatched.itertuples()]
    return labels[labels["dialogue"].isin(stems)], notes


def label_rows(rows: pd.DataFrame, labels: pd.DataFrame, path=None) -> tuple[pd.DataFrame, int, list[str]]:
    """Each utterance takes the label (and split) of the labelled span of its dialogue that fits
    it best (the most overlap over the union of the two: a 0-20 s span covers a 4.5-7.4 s utterance
    as fully as its own 4.5-7.4 s span does, but fits it far worse), if that covers at least half of
    it. Returns the rows, how many matched, and a note per utterance that spans of different labels
    each covered by half (the conflict, and which label was taken)."""
    rows = rows.copy()
    matched, conflicts = 0, []
    for index, row in rows.iterrows():
        spans = labels[labels["dialogue"] == row["dialogue_id"]]
        if spans.empty:
            continue
        overlap = (spans["end"].clip(upper=row["end"]) - spans["start"].clip(lower=row["start"])).clip(lower=0)
        union = spans["end"].clip(lower=row["end"]) - spans["start"].clip(upper=row["start"])
        covering = overlap >= 0.5 * (row["end"] - row["start"])
        if not covering.any():
            continue
        fit = (overlap / union)[covering]
        best = fit.idxmax()
        rows.at[index, "label"] = spans.at[best, "label"]
        if "split" in spans.columns and str(spans.at[best, "split"]).strip():
            rows.at[index, "split"] = spans.at[best, "split"]
        matched += 1
        others = spans[covering & (spans["label"] != spans.at[best, "label"])]
        if len(others):
            conflicts.append(f"{path}: {row['utterance_id']} ({row['start']:.2f}-{row['end']:.2f} s) lies in spans of "
                             f"different labels: took {spans.at[best, 'label']!r} (line {spans.at[best, 'line']}), "
                             f"the span that fits it best, over " + ", ".join(
                                 f"{o.label!r} (line {o.line})" for o in others.itertuples()))
    return rows, matched, conflicts


def one_line(text) -> str:
    """A name or a transcript's words as one line of a subtitle file or a manifest cell: a line
    break (even from a damaged cache entry) would start another cue, and ``-->`` another time line."""
    return " ".join(str(text).split()).replace("-->", "->")


def _stamp(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles_text(utterances: list[dict], vtt: bool = False) -> str:
    """What was heard as SRT (or WebVTT), one cue per utterance, the speaker as a ``NAME:`` prefix."""
    cues = []
    for i, u in enumerate(utterances, 1):
        sep = "." if vtt else ","
        times = f"{_stamp(u['start'], sep)} --> {_stamp(u['end'], sep)}"
        text, speaker = one_line(u["text"]), one_line(u["speaker"])
        cues.append(f"{times}\n{speaker}: {text}\n" if vtt else f"{i}\n{times}\n{speaker}: {text}\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(cues)


def write_subtitles(utterances: list[dict], path) -> Path:
    from pipeline.artifacts import atomic_write

    text = subtitles_text(utterances, vtt=Path(path).suffix.lower() == ".vtt")
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def heard_subtitles(utterances: list[dict], path: Path, command: str = "predict") -> Path:
    """What was heard as ``path``; where a different file of that name exists (subtitles a
    person made or corrected), it is kept and this goes to ``<name>.heard<suffix>`` instead."""
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") != subtitles_text(
            utterances, vtt=path.suffix.lower() == ".vtt"):
        kept, path = path, path.with_suffix(f".heard{path.suffix}")
        print(f"{command}: {kept} exists and is not what was heard: kept; what was heard -> {path}")
    return write_subtitles(utterances, path)


def frame_of(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)
