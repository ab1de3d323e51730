"""Can a learned detector find two people talking at once? A feasibility figure, nothing shipped.

    cd bench && python overlap_detector.py --data ../../shared/data

A small CNN over log-mel (64 bands, 10 ms hops) of 1 s chunks is trained on mixtures of the
tuning voices of ``real_voices.py`` (the Czech game lines) and scored, by ROC AUC, on:

- **tuning, held apart**: other mixtures of the same voices (for choosing the epoch);
- **held-out voices**: mixtures of the English held-out voices, made the same way;
- **the real call**: pyannote's telephone call, 1 s chunks every 0.25 s with at least 0.5 s of
  speech; a chunk is overlapped where two speakers' RTTM turns share 0.3 s or more of it.

Chunks: a quarter are two voices at once (the second -6..+6 dB against the first), a quarter a
change of speaker inside the chunk (no overlap: a detector must not fire on a turn change), half
one voice. Each line is set to one loudness first, each chunk moved by -6..+6 dB. The last line
is one JSON object: {"auc": {"tuning_apart", "held_out", "call"} per epoch, "call_chunks", ...}.

Its weights are fitted on ``shared/data`` voices (the tuning ones), which are for checking: the
network is a measurement of what such a detector could do, and must never ship as it is.
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import cache
from pathlib import Path

from common import last_line  # first: it pins the CPU kernels before numpy loads
import numpy as np

from extractors.media import SAMPLE_RATE, load_audio
from real_voices import FAMILIES, SPLIT, Voices, call_turns, voice_lines

CHUNK = SAMPLE_RATE   # 1 s
LEVEL = 0.07          # RMS each line is set to


@cache
def _mel():
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=64)


def log_mel(signal):
    import torch

    return torch.log(_mel()(torch.as_tensor(signal, dtype=torch.float32)) + 1e-6)


def _level(signal: np.ndarray) -> np.ndarray:
    return signal / (np.sqrt((signal ** 2).mean()) + 1e-9) * LEVEL


def voice_pool(voices: Voices, part: str) -> dict[str, list[np.ndarray]]:
    """{voice: its lines of at least a chunk, each at one loudness}."""
    pool = {}
    for voice in SPLIT[part]:
        lines = [_level(voices.audio(line)) for line in voices.lines.get(voice, [])]
        if lines := [line for line in lines if len(line) >= CHUNK]:
            pool[voice] = lines
    return pool


def _piece(rng, lines: list[np.ndarray]) -> np.ndarray:
    line = lines[rng.integers(len(lines))]
    start = rng.integers(len(line) - CHUNK + 1)
    return line[start:start + CHUNK]


def chunks(pool: dict, count: int, seed: int):
    """(log-mel chunks, 1 where two voices speak at once), reproducible from ``seed``."""
    import torch

    rng, names = np.random.default_rng(seed), list(pool)
    features, labels = [], []
    for i in range(count):
        kind = i % 4   # 0, 1: one voice; 2: a change of speaker; 3: two voices at once
        a, b = rng.choice(names, 2, replace=False)
        while any(a in family and b in family for family in FAMILIES):   # perhaps one actor
            a, b = rng.choice(names, 2, replace=False)
        if kind < 2:
            signal = _piece(rng, pool[a])
        elif kind == 2:
            cut = int(rng.uniform(0.3, 0.7) * CHUNK)
            signal = np.concatenate([_piece(rng, pool[a])[:cut], _piece(rng, pool[b])[cut:]])
        else:
            gain = 10 ** (rng.uniform(-6, 6) / 20)
            signal = (_piece(rng, pool[a]) + gain * _piece(rng, pool[b])) / np.sqrt(1 + gain ** 2)
        features.append(log_mel(signal * 10 ** (rng.uniform(-6, 6) / 20)))
        labels.append(int(kind == 3))
    return torch.stack(features), np.array(labels)


def call_chunks(data: Path):
    """The real call's 1 s chunks (every 0.25 s, at least 0.5 s of speech) and their labels."""
    import torch

    voices = data / "real_voices"
    signal, truth = load_audio(str(voices / "pyannote_sample" / "sample.wav")), call_turns(voices)

    def shared(start, a, b):
        return max(0.0, min(a["end"], b["end"], start + 1) - max(a["start"], b["start"], start))

    features, labels = [], []
    for start in np.arange(6.7, 29.0, 0.25):
        speech = sum(max(0.0, min(t["end"], start + 1) - max(t["start"], start)) for t in truth)
        if speech < 0.5:
            continue
        both = sum(shared(start, a, b) for i, a in enumerate(truth) for b in truth[i + 1:]
                   if a["speaker"] != b["speaker"])
        piece = signal[int(start * SAMPLE_RATE):int(start * SAMPLE_RATE) + CHUNK]
        features.append(log_mel(_level(piece)))
        labels.append(int(both >= 0.3))
    return torch.stack(features), np.array(labels)


def network():
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(32, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-chunks", type=int, default=6000)
    args = parser.parse_args()
    import torch
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(0)
    start = time.perf_counter()
    data = Path(args.data)
    voices = Voices(voice_lines(data))
    tuning, held_out = voice_pool(voices, "tuning"), voice_pool(voices, "held_out")
    x_train, y_train = chunks(tuning, args.train_chunks, 0)
    mean, std = x_train.mean(), x_train.std()   # the training chunks' scale, for every set
    sets = {"tuning_apart": chunks(tuning, 1000, 2), "held_out": chunks(held_out, 2000, 1), "call": call_chunks(data)}
    net, y = network(), torch.tensor(y_train, dtype=torch.float32)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)

    def scores(x):
        net.eval()
        with torch.no_grad():
            return torch.cat([net(((x[i:i + 256] - mean) / std).unsqueeze(1)).squeeze(1)
                              for i in range(0, len(x), 256)]).numpy()

    auc = {name: [] for name in sets}
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), 64):
            rows = order[i:i + 64]
            logits = net(((x_train[rows] - mean) / std).unsqueeze(1)).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        for name, (x, labels) in sets.items():
            auc[name].append(round(float(roc_auc_score(labels, scores(x))), 3))
        print(f"epoch {epoch}: " + ", ".join(f"{k} AUC {v[-1]}" for k, v in auc.items())
              + f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    best = int(np.argmax(auc["tuning_apart"]))   # the epoch, chosen on the tuning voices alone
    last_line({"auc": auc, "chosen_epoch": best, "at_chosen": {k: v[best] for k, v in auc.items()},
               "call_chunks": len(sets["call"][1]), "call_overlapped": int(sets["call"][1].sum()),
               "train_chunks": args.train_chunks, "voices": {"tuning": list(tuning), "held_out": list(held_out)}})


if __name__ == "__main__":
    main()
