"""What every extractor shares: the result of one utterance, the error base, the interfaces.

An *extractor* turns one clip (and segment) into one raw vector; a *fitted part* (a reducer,
a trained network) turns raw inputs of many utterances into the final features. Both are
looked up by name (``extractors.registry``), so adding one is one class and one registry line.
Nothing here imports a media library: training code can import it without PyAV or OpenCV.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallel_workers(workers: int, jobs: int) -> int:
    """Local worker processes (or threads) for ``jobs`` tasks: never more than the tasks (64
    workers on one recording loaded 64 Whisper models for one to use) nor than the cores they
    compete for. Workers and threads change no result, only how long it takes."""
    return max(1, min(int(workers), jobs, usable_cores()))


class ExtractorError(ValueError):
    """An input an extractor cannot use, naming the file (or setting) and the problem."""


@dataclass
class Result:
    """What extraction gave for one utterance: a vector, or the reason there is none."""
    vector: np.ndarray | None
    info: dict = field(default_factory=dict)
    error: str | None = None     # a reason tag (MediaError.reason, "silent", "no_face" ...)
    message: str | None = None


class Extractor(Protocol):
    """Per-clip work; built from its config in each worker process."""

    def extract(self, media: str, start: float | None = None, end: float | None = None) -> Result:
        ...


class FittedPart(Protocol):
    """Something fitted on the training split that maps raw inputs to features.

    ``state()`` holds tensors and plain values only, so a run folder loads without unpickling
    code (``extractors.parts.load_part``); ``from_state`` rebuilds the same part.
    """

    kind: str
    out_dim: int

    def transform(self, inputs) -> np.ndarray:
        ...

    def state(self) -> dict:
        ...

    @classmethod
    def from_state(cls, state: dict) -> "FittedPart":
        ...
