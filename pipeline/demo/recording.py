"""A generated recorded conversation: one .mp4 of several eSpeak voices taking turns, with the
truth (who said what, when) beside it. Tests and ``bench/transcribe.py`` measure transcription
and speaker finding on it; the picture shows the current speaker's face, as a show cuts to
whoever talks.

Each speaker has their own eSpeak variant and pitch; turns are separated by a pause, or, with
``overlap``, a share of them starts before the previous one ends (people talking over each
other). The same spec gives the same bytes.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from extractors.media import write_clip
from pipeline.demo.corpus import EMOTIONS, EXPRESSIONS, PROSODY, SKINS, _cue, _face_track, _jitter, _sentence, DemoConfig
from pipeline.demo.voice import speak

VOICES = ("en-us+m3", "en-us+f3", "en+m7", "en-us+f1")   # one eSpeak variant per speaker
PITCH = (-8.0, 8.0, -16.0, 16.0)                             # and their own pitch offset


@dataclass(frozen=True)
class RecordingSpec:
    speakers: int = 2
    turns: int = 8
    seed: int = 0
    overlap: float = 0.0          # share of turns that start before the previous turn ends
    overlap_s: float = 0.6        # by this much
    pause_s: tuple = (0.5, 1.0)   # silence between turns otherwise
    lead_s: float = 0.5           # silence before the first and after the last turn
    silent: bool = False          # the same length of picture with no voice at all
    noise_db: float = 35.0        # background noise, dB below the speech
    layout: str = "cut"           # cut: the speaker's face fills the picture; together: every face side by side
    fps: int = 12
    width: int = 160              # of one face's picture (together: the frame is speakers x this)
    height: int = 128
    sample_rate: int = 16000


def _turn_order(spec: RecordingSpec, rng) -> list[int]:
    """Speakers in turn: everyone speaks, and nobody twice in a row (one speaker: a monologue)."""
    if not 1 <= spec.speakers <= len(VOICES):
        raise ValueError(f"RecordingSpec.speakers {spec.speakers}: 1 to {len(VOICES)} (one eSpeak voice each)")
    if spec.speakers == 1:
        return [0] * spec.turns
    order = list(rng.permutation(spec.speakers))
    while len(order) < spec.turns:
        order.append(int(rng.choice([s for s in range(spec.speakers) if s != order[-1]])))
    return [int(s) for s in order[:spec.turns]]


def voiced_span(voice: np.ndarray) -> tuple[int, int]:
    """First and last voiced sample: the truth is the voice, not eSpeak's silence around it."""
    voiced = np.flatnonzero(np.abs(voice) > 0.02 * (np.abs(voice).max() + 1e-9))
    return (int(voiced[0]), int(voiced[-1]) + 1) if len(voiced) else (0, len(voice))


def make_recording(path, spec: RecordingSpec = RecordingSpec()) -> dict:
    """Write the recording to ``path`` and its truth to ``path`` + ``.truth.json``; return the truth:
    ``turns`` (speaker, start, end, text, label), ``duration`` and the spec."""
    rng = np.random.default_rng([spec.seed, spec.speakers, spec.turns])
    cfg = DemoConfig(fps=spec.fps, width=spec.width, height=spec.height, sample_rate=spec.sample_rate)
    rate = spec.sample_rate
    pieces, turns, cursor = [], [], spec.lead_s
    for index, speaker in enumerate(_turn_order(spec, rng)):
        label = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
        text = _sentence(_cue(label, 1.0, rng), rng)
        prosody = _jitter(PROSODY[label], PITCH[speaker], rng)
        voice = speak(text, prosody, VOICES[speaker], rate, seed=int(rng.integers(2 ** 31)))
        first, last = voiced_span(voice)
        if index:   # pauses and overlaps are between voices
            overlapping = rng.random() < spec.overlap
            gap = -spec.overlap_s if overlapping else rng.uniform(*spec.pause_s)
            cursor = max(0.0, turns[-1]["end"] + gap - first / rate)
        turns.append({"speaker": f"S{speaker + 1}", "start": round(cursor + first / rate, 3),
                      "end": round(cursor + last / rate, 3), "text": text, "label": label, "voice": VOICES[speaker],
                      "_offset": cursor, "_length": len(voice) / rate})
        pieces.append((int(cursor * rate), voice, speaker, label))
    duration = turns[-1]["_offset"] + turns[-1]["_length"] + spec.lead_s
    for turn in turns:
        del turn["_offset"], turn["_length"]
    audio = np.zeros(int(duration * rate) + 1, np.float32)
    for offset, voice, _, _ in pieces:
        audio[offset:offset + len(voice)] += voice
    rms = float(np.sqrt(np.mean(audio[audio != 0] ** 2))) if audio.any() else 0.1
    audio = audio + rng.normal(0, rms / 10 ** (spec.noise_db / 20), audio.shape).astype(np.float32)
    if spec.silent:
        audio = rng.normal(0, 1e-5, audio.shape).astype(np.float32)
    if spec.layout not in ("cut", "together"):
        raise ValueError(f"RecordingSpec.layout {spec.layout!r}: cut | together")
    frames = _picture(pieces, audio, duration, cfg, rng) if spec.layout == "cut" else \
        _picture_together(pieces, audio, duration, cfg, rng, spec.speakers)
    write_clip(path, frames, spec.fps, np.clip(audio, -1, 1), rate)
    truth = {"turns": [] if spec.silent else turns, "duration": round(duration, 3), "spec": asdict(spec)}
    Path(f"{path}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _picture(pieces, audio, duration, cfg: DemoConfig, rng) -> np.ndarray:
    """The current speaker's face, its mouth following the voice; between turns the last one."""
    total = max(1, int(np.ceil(duration * cfg.fps)))
    skins = [SKINS[i % len(SKINS)] for i in range(len(VOICES))]
    frames = None
    for offset, voice, speaker, label in pieces:
        first = int(offset / cfg.sample_rate * cfg.fps)
        track = _face_track(EXPRESSIONS[label], voice, skins[speaker], cfg, rng)
        if frames is None:
            frames = np.repeat(track[:1], total, axis=0)
        frames[first:first + len(track)] = track[:total - first]
        frames[first + len(track):] = track[-1]
    return frames


def _picture_together(pieces, audio, duration, cfg: DemoConfig, rng, speakers: int) -> np.ndarray:
    """Every speaker's face side by side (speaker k in the k-th panel from the left), each mouth
    moving with its own voice only: whose face is the speaker's is for the mouths to tell. A
    speaker with no turn (fewer turns than speakers) sits there listening."""
    total = max(1, int(np.ceil(duration * cfg.fps)))
    panels = []
    for speaker in range(speakers):
        skin = SKINS[speaker % len(SKINS)]
        silent = np.zeros(int(duration * cfg.sample_rate) + 1, np.float32)
        panel = _face_track(EXPRESSIONS["neutral"], silent, skin, cfg, rng, listening=True)[:total]
        for offset, voice, who, label in pieces:
            if who == speaker:
                first = int(offset / cfg.sample_rate * cfg.fps)
                track = _face_track(EXPRESSIONS[label], voice, skin, cfg, rng)
                panel[first:first + len(track)] = track[:total - first]
        panels.append(panel)
    return np.concatenate(panels, axis=2)
