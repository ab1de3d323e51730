"""The demo generator: real clips, reproducible from a seed, labels with inertia and contagion."""
import hashlib
from collections import Counter

import numpy as np

import pytest

from pipeline.demo.corpus import EMOTIONS, DemoConfig, _labels_for_dialogue, generate
from pipeline.demo.recording import RecordingSpec, make_recording
from pipeline.demo.voice import Prosody, engine_name, speak


def _digest(root):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.mp4")))).hexdigest()


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    cfg = DemoConfig(dialogues=2, min_turns=2, max_turns=2, seed=11)
    a = generate(tmp_path / "a", cfg, workers=1, progress=False)
    b = generate(tmp_path / "b", cfg, workers=2, progress=False)
    assert a.equals(b)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    c = generate(tmp_path / "c", DemoConfig(dialogues=2, min_turns=2, max_turns=2, seed=12), progress=False)
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a")


needs_espeak = pytest.mark.skipif(engine_name() != "espeak-ng", reason="eSpeak NG is not loadable here")


@needs_espeak
def test_speech_does_not_depend_on_what_was_said_before():
    """eSpeak carries its wave state from one synthesis to the next; the same words must not."""
    first = speak("hello there, how are you today", Prosody(), "en-us+m3", 16000, seed=5)
    speak("what a wonderful surprise!", Prosody(pitch=70, rate=200), "en-us+f3", 16000, seed=7)
    again = speak("hello there, how are you today", Prosody(), "en-us+m3", 16000, seed=5)
    assert np.array_equal(first, again)


@needs_espeak
def test_recording_and_corpus_bytes_do_not_depend_on_earlier_speech(tmp_path):
    cfg = DemoConfig(dialogues=1, min_turns=2, max_turns=2, seed=3)
    generate(tmp_path / "a", cfg, progress=False)
    spec = RecordingSpec(speakers=2, turns=3, seed=1)
    make_recording(tmp_path / "one.mp4", spec)
    speak("something else entirely", Prosody(pitch=30), "en+m7", 16000, seed=9)
    make_recording(tmp_path / "two.mp4", spec)
    generate(tmp_path / "b", cfg, progress=False)   # its dialogues are forked from this process
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "two.mp4").read_bytes()
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_manifest_of_the_tiny_corpus(tiny_corpus):
    root, manifest = tiny_corpus
    assert (root / "manifest.csv").is_file() and (root / "corpus.json").is_file()
    assert list(manifest["turn"]) == [0, 1, 2]
    assert set(manifest["label"]) <= set(EMOTIONS)
    assert all((root / m).is_file() for m in manifest["media"])
    assert manifest["text"].str.len().min() > 5


def test_labels_follow_inertia_and_contagion():
    cfg = DemoConfig()
    rng = np.random.default_rng(0)
    own, other, prior = Counter(), Counter(), Counter()
    for _ in range(400):
        turns = _labels_for_dialogue(cfg, 12, rng)
        last = {}
        for k, (speaker, emotion) in enumerate(turns):
            prior[emotion] += 1
            if speaker in last:
                own[emotion == last[speaker]] += 1
            if k and turns[k - 1][0] != speaker:
                other[emotion == turns[k - 1][1]] += 1
            last[speaker] = emotion
    chance = sum((n / sum(prior.values())) ** 2 for n in prior.values())
    assert own[True] / sum(own.values()) > chance + 0.3       # inertia within a speaker
    assert other[True] / sum(other.values()) > chance + 0.15  # contagion across speakers
