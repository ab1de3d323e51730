"""The built-in demo corpus: two-speaker dialogues of real .mp4 clips, made from a seed.

Labels follow emotional inertia (a speaker tends to keep an emotion) and contagion (a speaker
tends to take the other's last emotion). Each modality carries the label's cue only with some
probability, otherwise another emotion's cue (or, for text, none), so modalities sometimes
conflict: fusing them and reading the context both help.

The output folder is in the generic layout (``manifest.csv`` with media paths relative to the
folder, plus ``corpus.json``), so ``ingest --format demo`` reads it with the generic reader.
"""
from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from extractors.base import parallel_workers
from extractors.media import write_clip
from pipeline.demo.face import Expression, draw_face
from pipeline.demo.voice import Prosody, engine_name, speak

EMOTIONS = ("neutral", "happy", "sad", "angry")

CUE_WORDS = {
    "neutral": ("okay", "fine", "sure", "usual", "alright", "noted"),
    "happy": ("great", "wonderful", "love", "glad", "fantastic", "amazing"),
    "sad": ("sorry", "miss", "lonely", "tired", "unfortunately", "lost"),
    "angry": ("hate", "ridiculous", "furious", "unacceptable", "annoying", "outrageous"),
}
TOPICS = ("meeting", "weekend", "project", "dinner", "train", "letter", "party", "weather", "exam", "car")
FRAMES_WITH_CUE = (
    "I think the {topic} is {cue}", "{cue}, the {topic} again", "well the {topic} was {cue} today",
    "you know, {cue}, that {topic}", "so about the {topic}, {cue}", "honestly the {topic} feels {cue}",
)
FRAMES_WITHOUT_CUE = ("the {topic} is at five", "did you see the {topic}", "we talked about the {topic}")

PROSODY = {  # eSpeak pitch / words per minute / gain / intonation range
    "neutral": Prosody(pitch=45, rate=160, volume=0.55, pitch_range=35),
    "happy": Prosody(pitch=72, rate=190, volume=0.8, pitch_range=85),
    "sad": Prosody(pitch=25, rate=115, volume=0.3, pitch_range=10),
    "angry": Prosody(pitch=58, rate=205, volume=1.0, pitch_range=70),
}
EXPRESSIONS = {
    "neutral": Expression(mouth_curve=0.0, brow_raise=0.0, brow_tilt=0.0, eye_open=0.7),
    "happy": Expression(mouth_curve=0.9, brow_raise=0.3, brow_tilt=0.0, eye_open=0.45),
    "sad": Expression(mouth_curve=-0.7, brow_raise=0.2, brow_tilt=-0.9, eye_open=0.35),
    "angry": Expression(mouth_curve=-0.3, brow_raise=-0.6, brow_tilt=0.9, eye_open=1.0),
}
VOICES = ("en-us", "en-us+f3")
SKINS = ((224, 172, 140), (198, 134, 96), (241, 194, 160), (160, 110, 80))
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)   # the clips' audio codec takes these


@dataclass
class DemoConfig:
    dialogues: int = 40
    min_turns: int = 8
    max_turns: int = 12
    seed: int = 0
    fps: int = 12
    width: int = 160
    height: int = 128
    sample_rate: int = 16000
    inertia: float = 0.6      # P(a speaker keeps their last emotion)
    contagion: float = 0.25   # P(a speaker takes the other speaker's last emotion)
    switch: float = 0.8       # P(the turn passes to the other speaker)
    cue_reliability: dict = field(default_factory=lambda: {"text": 0.6, "audio": 0.6, "visual": 0.6})
    snr_db: tuple = (12.0, 30.0)   # background noise, drawn per clip
    pixel_noise: float = 6.0
    head_motion: float = 5.0   # pixels
    splits: dict = field(default_factory=lambda: {"train": 0.7, "valid": 0.15, "test": 0.15})

    def __post_init__(self):
        if self.min_turns > self.max_turns:
            raise ValueError(f"demo.min_turns {self.min_turns} is more than demo.max_turns {self.max_turns}")
        for key in ("width", "height"):   # H.264 in yuv420p takes even sizes; past 4096 the clips only get slow
            value = getattr(self, key)
            if value % 2 or not 16 <= value <= 4096:
                raise ValueError(f"demo.{key} {value}: give an even number of pixels from 16 to 4096")
        if self.sample_rate not in AAC_RATES:   # the clips' audio is AAC: another rate failed inside the encoder
            raise ValueError(f"demo.sample_rate {self.sample_rate}: give one of AAC's rates {list(AAC_RATES)}")
        cues = self.cue_reliability
        if not isinstance(cues, dict) or set(cues) != {"text", "audio", "visual"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in cues.values()):
            raise ValueError(f"demo.cue_reliability {cues!r}: give text, audio and visual, each a probability "
                             f"from 0 to 1")


def _labels_for_dialogue(cfg: DemoConfig, turns: int, rng) -> list[tuple[str, str]]:
    """(speaker, emotion) per turn: inertia within a speaker, contagion across speakers."""
    prior = np.array([0.4, 0.2, 0.2, 0.2])
    last = {}
    speaker, previous_emotion, out = "A", None, []
    for k in range(turns):
        if k > 0 and rng.random() < cfg.switch:
            speaker = "B" if speaker == "A" else "A"
        draw = rng.random()
        if speaker in last and draw < cfg.inertia:
            emotion = last[speaker]
        elif previous_emotion is not None and draw < cfg.inertia + cfg.contagion:
            emotion = previous_emotion
        else:
            emotion = EMOTIONS[rng.choice(len(EMOTIONS), p=prior)]
        last[speaker] = previous_emotion = emotion
        out.append((speaker, emotion))
    return out


def _cue(label: str, reliability: float, rng, allow_none: bool = False) -> str | None:
    """The emotion a modality shows: the true one, another one, or (text) none."""
    if rng.random() < reliability:
        return label
    if allow_none and rng.random() < 0.5:
        return None
    others = [e for e in EMOTIONS if e != label]
    return others[int(rng.integers(len(others)))]


def _sentence(cue: str | None, rng) -> str:
    topic = TOPICS[int(rng.integers(len(TOPICS)))]
    if cue is None:
        return FRAMES_WITHOUT_CUE[int(rng.integers(len(FRAMES_WITHOUT_CUE)))].format(topic=topic)
    word = CUE_WORDS[cue][int(rng.integers(len(CUE_WORDS[cue])))]
    sentence = FRAMES_WITH_CUE[int(rng.integers(len(FRAMES_WITH_CUE)))].format(topic=topic, cue=word)
    return sentence[0].upper() + sentence[1:]


def _jitter(prosody: Prosody, speaker_pitch: float, rng) -> Prosody:
    return Prosody(
        pitch=float(np.clip(prosody.pitch + speaker_pitch + rng.normal(0, 6), 0, 99)),
        rate=float(prosody.rate * rng.uniform(0.9, 1.1)),
        volume=float(prosody.volume * rng.uniform(0.8, 1.2)),
        pitch_range=float(np.clip(prosody.pitch_range + rng.normal(0, 8), 0, 99)),
    )


def _voice_track(text, prosody, voice, cfg, rng, seed) -> np.ndarray:
    speech = speak(text, prosody, voice, cfg.sample_rate, seed, fresh=False)   # each dialogue has its own process
    pad = np.zeros(int(0.15 * cfg.sample_rate), np.float32)
    signal = np.concatenate([pad, speech, pad])
    rms = float(np.sqrt(np.mean(speech ** 2))) + 1e-6
    snr = rng.uniform(*cfg.snr_db)
    signal = signal + rng.normal(0, rms / 10 ** (snr / 20), signal.shape).astype(np.float32)
    return np.clip(signal, -1, 1).astype(np.float32)


def _face_track(expression: Expression, audio: np.ndarray, skin, cfg: DemoConfig, rng, listening: bool = False) -> np.ndarray:
    """The face over ``audio``'s length, its mouth opening with the audio's loudness (``listening``:
    closed throughout)."""
    duration = len(audio) / cfg.sample_rate
    n = max(1, int(np.ceil(duration * cfg.fps)))
    window = cfg.sample_rate // cfg.fps
    loudness = np.array([np.sqrt(np.mean(audio[i * window:(i + 1) * window] ** 2) + 1e-12) for i in range(n)])
    mouth = np.zeros(n) if listening else np.clip(loudness / (loudness.max() + 1e-9), 0, 1)
    phase = rng.uniform(0, 2 * np.pi, 2)
    face = Expression(**{k: v + rng.normal(0, 0.1) for k, v in asdict(expression).items()})
    frames = []
    for i in range(n):
        t = i / cfg.fps
        offset = (cfg.head_motion * np.sin(2 * np.pi * 0.5 * t + phase[0]),
                  cfg.head_motion / 2 * np.sin(2 * np.pi * 0.7 * t + phase[1]))
        frames.append(draw_face(face, float(mouth[i]) * 0.8, (cfg.width, cfg.height), offset, skin, rng,
                                cfg.pixel_noise))
    return np.stack(frames)


def _assign_splits(dialogue_ids: list[str], cfg: DemoConfig, rng) -> dict[str, str]:
    order = list(rng.permutation(len(dialogue_ids)))
    n_valid = max(1, round(cfg.splits["valid"] * len(order))) if len(order) >= 3 else 0
    n_test = max(1, round(cfg.splits["test"] * len(order))) if len(order) >= 3 else 0
    split = {}
    for rank, idx in enumerate(order):
        name = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
        split[dialogue_ids[idx]] = name
    return split


def _make_dialogue(job) -> tuple[list[dict], str]:
    """Write one dialogue's clips. Runs in a fresh forked process: eSpeak NG keeps state across
    utterances within a process, so a dialogue made in a clean process sounds the same every time."""
    cfg, out_dir, d, dialogue_id, split = job
    drng = np.random.default_rng([cfg.seed, d])  # each dialogue its own stream: stable under edits
    turns = int(drng.integers(cfg.min_turns, cfg.max_turns + 1))
    voices = dict(zip("AB", drng.permutation(VOICES)))
    skins = dict(zip("AB", (SKINS[i] for i in drng.choice(len(SKINS), 2, replace=False))))
    pitch = {"A": drng.normal(0, 6), "B": drng.normal(0, 6)}
    rows, rel = [], cfg.cue_reliability
    for turn, (speaker, label) in enumerate(_labels_for_dialogue(cfg, turns, drng)):
        text = _sentence(_cue(label, rel["text"], drng, allow_none=True), drng)
        prosody = _jitter(PROSODY[_cue(label, rel["audio"], drng)], pitch[speaker], drng)
        audio = _voice_track(text, prosody, str(voices[speaker]), cfg, drng, seed=int(drng.integers(2**31)))
        frames = _face_track(EXPRESSIONS[_cue(label, rel["visual"], drng)], audio, skins[speaker], cfg, drng)
        utterance_id = f"{dialogue_id}_u{turn:02d}"
        media = f"clips/{utterance_id}.mp4"
        write_clip(Path(out_dir) / media, frames, cfg.fps, audio, cfg.sample_rate)
        rows.append(dict(dataset="demo", split=split, dialogue_id=dialogue_id, utterance_id=utterance_id,
                         turn=turn, speaker=speaker, text=text, label=label, media=media, start="", end=""))
    return rows, engine_name()


def generate(out_dir, cfg: DemoConfig | None = None, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Write the corpus into ``out_dir`` and return its manifest (also ``manifest.csv``)."""
    cfg = cfg or DemoConfig()
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    dialogue_ids = [f"demo{d:03d}" for d in range(cfg.dialogues)]
    splits = _assign_splits(dialogue_ids, cfg, rng)
    jobs = [(cfg, str(out_dir), d, name, splits[name]) for d, name in enumerate(dialogue_ids)]
    rows, engines = [], set()
    with mp.get_context("fork").Pool(parallel_workers(workers, len(jobs)), maxtasksperchild=1) as pool:
        done = pool.imap(_make_dialogue, jobs)
        for dialogue_rows, engine in tqdm(done, total=len(jobs), desc="demo corpus", unit="dialogue",
                                          disable=None if progress else True):
            rows.extend(dialogue_rows)
            engines.add(engine)
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    info = {"labels": list(EMOTIONS), "voice_engine": sorted(engines), "config": asdict(cfg)}
    (out_dir / "corpus.json").write_text(json.dumps(info, indent=2, default=list) + "\n")
    return manifest
