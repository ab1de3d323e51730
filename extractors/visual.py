"""Visual features (paper 3.1.3): frames at a chosen rate, the speaker's face found with an
OpenCV Haar cascade, per-frame descriptors of the face crop pooled over the utterance.

Backbones, by name (``BACKBONES``; adding one is a function and a line there):
- ``handcrafted``: HOG + LBP histogram per frame (mean and std over frames) + motion energy.
- ``cnn3d``: the face crops as a small clip (T x 32 x 32); a 3D-CNN trained on the training
  labels turns it into the feature (``extractors.cnn3d``).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache

import cv2
import numpy as np

from extractors.base import Result
from extractors.media import load_frames


class NoFace(str, Enum):
    FULL_FRAME = "full_frame"   # use the whole (region of the) frame
    DROP = "drop"               # drop the frame; a clip with no face frame has no visual feature


class Region(str, Enum):
    FULL = "full"
    LEFT = "left"     # IEMOCAP's dialog videos show both actors side by side
    RIGHT = "right"


@dataclass(frozen=True)
class VisualConfig:
    backbone: str = "handcrafted"
    fps: float = 4.0
    face_size: int = 64
    min_face: int = 24
    no_face: str = "full_frame"
    region: str = "full"
    max_side: int = 480
    detect_side: int = 0     # > 0: find faces on a copy downscaled to this side (faster), crop at max_side
    clip_frames: int = 8     # cnn3d
    clip_size: int = 32      # cnn3d


class FaceFinder:
    """The largest frontal face in a grey image, from the Haar cascade bundled with OpenCV 4.x."""

    def __init__(self, min_face: int):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {path} (opencv-python-headless 4.x ships it)")
        self.min_face = min_face

    def find(self, gray: np.ndarray, detect_side: int = 0):
        """(x, y, w, h) in ``gray``'s pixels; with ``detect_side``, searched on a smaller copy."""
        scale = detect_side / max(gray.shape) if detect_side and max(gray.shape) > detect_side else 1.0
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        side = max(8, int(round(self.min_face * scale)))
        faces = self.cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=4, minSize=(side, side))
        if len(faces) == 0:
            return None
        return (np.asarray(max(faces, key=lambda f: f[2] * f[3])) / scale).round().astype(int)


def _region(frame: np.ndarray, region: Region) -> np.ndarray:
    half = frame.shape[1] // 2
    return {Region.FULL: frame, Region.LEFT: frame[:, :half], Region.RIGHT: frame[:, half:]}[region]


@cache
def _hog():
    """Built on first use, not at import: some OpenCV builds lack HOG, and importing must not fail."""
    return cv2.HOGDescriptor((64, 64), (32, 32), (16, 16), (16, 16), 9)


def lbp_histogram(gray: np.ndarray) -> np.ndarray:
    """256-bin histogram of 8-neighbour local binary patterns."""
    g = gray.astype(np.int16)
    centre = g[1:-1, 1:-1]
    codes = np.zeros_like(centre, dtype=np.uint8)
    shifts = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    for bit, (dy, dx) in enumerate(shifts):
        neighbour = g[1 + dy:g.shape[0] - 1 + dy, 1 + dx:g.shape[1] - 1 + dx]
        codes |= ((neighbour >= centre).astype(np.uint8) << bit)
    hist = np.bincount(codes.ravel(), minlength=256).astype(np.float32)
    return hist / hist.sum()


def handcrafted(crops: list[np.ndarray]) -> np.ndarray:
    """Pooled HOG + LBP (mean, std over frames) and motion energy on a 4x4 grid."""
    per_frame = np.stack([np.concatenate([_hog().compute(cv2.resize(c, (64, 64))).ravel(), lbp_histogram(c)])
                          for c in crops])
    stack = np.stack([cv2.resize(c, (64, 64)).astype(np.float32) / 255 for c in crops])
    if len(stack) > 1:
        motion = np.abs(np.diff(stack, axis=0)).mean(0)
        grid = motion.reshape(4, 16, 4, 16).mean(axis=(1, 3)).ravel()
    else:
        grid = np.zeros(16, np.float32)
    return np.concatenate([per_frame.mean(0), per_frame.std(0), grid, [grid.mean()]]).astype(np.float32)


def face_clip(crops: list[np.ndarray], frames: int, size: int) -> np.ndarray:
    """``frames`` crops, evenly spaced, as a (frames * size * size) vector in [0, 1]."""
    idx = np.linspace(0, len(crops) - 1, frames).round().astype(int)
    return np.stack([cv2.resize(crops[i], (size, size)) for i in idx]).astype(np.float32).ravel() / 255


class VisualExtractor:
    name = "visual"

    def __init__(self, config: VisualConfig):
        self.config = config
        self.backbone = config.backbone
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown visual backbone {self.backbone!r}; known: {sorted(BACKBONES)}")
        self.no_face, self.region = NoFace(config.no_face), Region(config.region)
        self.finder = FaceFinder(config.min_face)

    def extract(self, media, start=None, end=None) -> Result:
        cfg = self.config
        frames, _ = load_frames(media, cfg.fps, start, end, max_side=cfg.max_side)
        crops, found = [], 0
        for frame in frames:
            gray = cv2.cvtColor(_region(frame, self.region), cv2.COLOR_RGB2GRAY)
            box = self.finder.find(gray, cfg.detect_side)
            if box is not None:
                x, y, w, h = box
                found += 1
                crops.append(cv2.resize(gray[y:y + h, x:x + w], (cfg.face_size, cfg.face_size)))
            elif self.no_face is NoFace.FULL_FRAME:
                crops.append(cv2.resize(gray, (cfg.face_size, cfg.face_size)))
        info = {"frames": int(len(frames)), "face_frames": int(found)}
        if not crops:
            return Result(None, info, "no_face", f"{media}: no face in any of {len(frames)} frames")
        vector = BACKBONES[self.backbone](crops, cfg)
        return Result(vector, info)


BACKBONES = {
    "handcrafted": lambda crops, cfg: handcrafted(crops),
    "cnn3d": lambda crops, cfg: face_clip(crops, cfg.clip_frames, cfg.clip_size),
}
TRAINED_BACKBONES = {"cnn3d"}   # their cached vectors are inputs to a network trained in the stage (cnn3d.py)
