"""A user's own recording as a conversation: a video plus its ``.srt`` or WebVTT subtitles.

Each cue is one utterance, cut from the video by the cue's times. The speaker is the WebVTT
voice tag (``<v Ann>``), else a ``NAME:`` prefix of the cue text (``split_speaker``: a name
with capitals or in a script without case, ``ÉLODIE:``, ``张伟:`` and ``张伟：`` too, not a
sentence such as ``The point is: ...`` or ``Note: ...``), else ``unknown``. Styling (ASS/SSA override tags such as ``{\\an8}``, HTML-ish
tags such as ``<i>``) is stripped from the text. Cues are taken in order of start time. Problems:
a broken timestamp or a cue that ends before it starts is an error naming the file and the cue
(its line); an empty cue, or one that starts past the video's end, is skipped and counted;
overlapping cues (people talk over each other) are kept and counted; a cue running past the
end is cut at the end and counted. Parsing is webvtt-py's (SRT and WebVTT).
"""
from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from pipeline.manifest import COLUMNS, ManifestError, decode_text

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".flv", ".m4v")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac")   # recordings without a picture
RECORDINGS = f"recording (video: {', '.join(VIDEO_SUFFIXES)}; audio: {', '.join(AUDIO_SUFFIXES)})"
SUBTITLE_SUFFIXES = (".srt", ".vtt")
TIMESTAMP = r"(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3}"
CUE_TIMES = re.compile(rf"^\s*({TIMESTAMP})\s+-->\s+({TIMESTAMP})(\s.*)?$")
SHORT_FRACTION = re.compile(r"(:\d{2}[.,])(\d{1,2})(?!\d)")   # 00:00:00,5: half a second, as players read it
# NAME, then ": " (a space after it: not 10:30, not a URL) or a full-width "：" (CJK scripts, no space needed)
NAME_PREFIX = re.compile(r"^\s*(\w[\w .'-]{0,30}?)\s*(?::\s+|\uff1a\s*)(.+)$", re.S)
NAME_PARTICLES = {"van", "von", "de", "da", "di", "du", "del", "della", "der", "den", "la", "le", "bin", "ibn", "al",
                  "el"}   # lower case inside a name: Ludwig van Beethoven
NOT_NAMES = {"note", "notes", "nb", "n.b", "ps", "p.s", "warning", "caution", "tip", "hint", "example", "update",
             "edit", "source", "translation", "lyrics", "disclaimer", "spoiler", "spoilers"}   # Note: this ...
CASELESS_WORD = 10   # a word of a script without case (张伟, مريم) is a name up to this many characters
ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")                  # {\an8}, {\i1}, {\c&H00FFFF&}
ASS_BREAK = re.compile(r"\\[Nnh]")                          # ASS hard/soft line break, hard space
MARKUP = re.compile(r"</?(?:i|b|u|s|font|c|v|lang|ruby|rt|span)\b[^>]*>", re.I)


def clean_text(text: str) -> str:
    """A cue's words without styling, on one line."""
    text = MARKUP.sub("", ASS_BREAK.sub(" ", ASS_OVERRIDE.sub("", text)))
    return " ".join(text.split())


def split_speaker(text: str) -> tuple[str | None, str]:
    """``NAME: words`` -> (NAME, words), else (None, text). NAME is one to four words, each starting
    with a capital or with a letter of a script without case (``ÉLODIE``, ``张伟``, ``مريم``; a
    caseless word up to ``CASELESS_WORD`` characters), lower-case particles inside it allowed
    (``Ludwig van Beethoven``). So ``bob: hi`` and ``The reason is simple: no`` keep their colon,
    and so do the annotation words of ``NOT_NAMES`` (``Note: this``)."""
    match = NAME_PREFIX.match(text)
    if match and is_name(match.group(1)):
        return match.group(1), match.group(2)
    return None, text


def is_name(prefix: str) -> bool:
    words = prefix.split()
    if not 1 <= len(words) <= 4 or prefix.strip(" .").casefold() in NOT_NAMES:
        return False
    for k, word in enumerate(words):
        if k and word in NAME_PARTICLES:
            continue
        first = next((c for c in word if c.isalpha()), None)
        if first is None or first.islower():
            return False
        if not first.isupper() and len(word) > CASELESS_WORD:   # a script without case: a short word only
            return False
    return True


def seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    return sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))


def full_milliseconds(text: str) -> str:
    """The cue time lines with three-digit fractions: ``00:00:00,5`` is 0.5 s (players read it so;
    webvtt-py read it as 5 ms), written ``00:00:00,500`` before any parser sees it."""
    pad = lambda m: m.group(1) + m.group(2).ljust(3, "0")  # noqa: E731
    return "\n".join(SHORT_FRACTION.sub(pad, line) if "-->" in line else line for line in text.split("\n"))


def _timestamp_lines(path: Path, text: str) -> list[tuple[float, float, int]]:
    """(start, end, line number) of every cue; a ``-->`` line that is not two timestamps, or a cue
    that ends before it starts, is an error naming the line."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if "-->" in line:
            match = CUE_TIMES.match(line)
            if not match:
                raise ManifestError(f"{path}: line {number}: broken cue timestamp {line.strip()!r}")
            start, end = seconds(match.group(1)), seconds(match.group(2))
            if end <= start:
                raise ManifestError(f"{path}: line {number}: cue ends ({match.group(2)}) before it starts "
                                    f"({match.group(1)})")
            found.append((start, end, number))
    return found


def read_cues(path, duration: float | None = None) -> tuple[list[dict], Counter]:
    """The cues as dicts (start, end, speaker, text, line) and what was skipped or changed."""
    import webvtt

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: subtitle file not found")
    text = full_milliseconds(decode_text(path, path.read_bytes()))   # UTF-8, or Windows-1252 as old .srt files are
    lines = _timestamp_lines(path, text)
    try:
        kind = "srt" if path.suffix.lower() == ".srt" else "vtt"
        captions = list(webvtt.WebVTT.from_buffer(io.StringIO(text), format=kind))
    except Exception as exc:  # webvtt-py raises its own types for malformed files
        raise ManifestError(f"{path}: not a readable {path.suffix} file ({exc})") from exc
    cues, counts, last_end = [], Counter(), 0.0
    counts["empty"] += len(lines) - len(captions)     # webvtt-py drops cues without text
    for caption, start, end, text in cue_parts(sorted(captions, key=lambda c: seconds(c.start)), counts):
        cue_start, cue_end = seconds(caption.start), seconds(caption.end)   # the line is the whole cue's
        line = next((n for s, e, n in lines if abs(s - cue_start) < 1e-3 and abs(e - cue_end) < 1e-3), None)
        speaker = getattr(caption, "voice", None)
        if not speaker:
            speaker, text = split_speaker(text)
        if not text:
            counts["empty"] += 1
            continue
        if duration and start >= duration:
            counts["past_the_end"] += 1
            continue
        if duration and end > duration:
            end, counts["cut_at_the_end"] = duration, counts["cut_at_the_end"] + 1
        if start < last_end:
            counts["overlapping"] += 1
        last_end = max(last_end, end)
        cues.append({"start": start, "end": end, "speaker": (speaker or "unknown").strip(), "text": text, "line": line})
    counts = Counter({k: v for k, v in counts.items() if v})
    if not cues:
        raise ManifestError(f"{path}: no usable cue ({dict(counts)})")
    return cues, counts


DIALOGUE_DASH = re.compile(r"^\s*[-\u2010-\u2015]\s*")


def cue_parts(captions, counts: Counter):
    """(caption, start, end, text) per turn. A cue of dash lines (``- ANN: coming?`` / ``- BOB: no.``)
    holds two people's turns: each line is a turn of its own, the cue's time shared by the length
    of its words (counted ``dialogue_split``); else the cue is one turn."""
    for caption in captions:   # stable: file order among equal starts
        start, end = seconds(caption.start), seconds(caption.end)
        turns = [t for t in caption.text.splitlines() if t.strip()]
        if len(turns) < 2 or not all(DIALOGUE_DASH.match(t) for t in turns):
            yield caption, start, end, clean_text(caption.text)
            continue
        counts["dialogue_split"] += 1
        words = [clean_text(DIALOGUE_DASH.sub("", t, count=1)) for t in turns]
        total, at = sum(max(len(w), 1) for w in words), start
        for text in words:
            until = at + (end - start) * max(len(text), 1) / total
            yield caption, round(at, 3), round(until, 3), text
            at = until


def videos_in(folder) -> list[Path]:
    """The recordings of a folder, by name: videos, and audio recordings (a folder of .wav files
    was "no video in the folder", though one .wav given alone was transcribed)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES + AUDIO_SUFFIXES)


def stem_clash(videos) -> tuple[Path, Path] | None:
    """The first two videos of one name but for the suffix (talk.mkv, talk.mp4), if any: they
    would share a dialogue, utterance ids, subtitles and transcript files."""
    seen = {}
    for video in videos:
        if video.stem in seen:
            return seen[video.stem], video
        seen[video.stem] = video
    return None


def subtitle_for(video: Path) -> Path | None:
    for suffix in SUBTITLE_SUFFIXES:
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def conversation(video, subtitles, split: str = "test", labels: dict | None = None) -> tuple[pd.DataFrame, Counter]:
    """One video and its subtitles as manifest rows (dialogue = the video's name)."""
    from extractors.media import probe

    video = Path(video)
    cues, counts = read_cues(subtitles, probe(video).duration)
    stem = video.stem
    rows = [{"dataset": "subtitles", "split": split, "dialogue_id": stem, "utterance_id": f"{stem}_{i:04d}",
             "turn": i, "speaker": c["speaker"], "text": c["text"], "label": "", "media": str(video),
             "start": round(c["start"], 3), "end": round(c["end"], 3)} for i, c in enumerate(cues)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.attrs["where"] = [f"{subtitles}: line {c['line']}" for c in cues]   # for errors about a row
    if labels:
        frame["label"] = frame["utterance_id"].map(lambda u: labels.get(u, ("", None))[0])
        frame["split"] = frame["utterance_id"].map(lambda u: labels.get(u, ("", None))[1] or split)
    return frame, counts
