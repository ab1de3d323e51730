"""The demo generator: real clips, reproducible from a seed, labels with inertia and contagion."""
import hashlib
from collections import Counter

import numpy as np

from pipeline.demo.corpus import EMOTIONS, DemoConfig, _labels_for_dialogue, generate


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
