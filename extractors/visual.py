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


class Speaker(str, Enum):
    LARGEST = "largest"   # the largest face in frame
    ACTIVE = "active"     # the face whose mouth opens and closes with the voice


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
    speaker: str = "largest"  # largest | active (the face whose mouth moves with the audio envelope)
    active_fps: float = 12.0  # active: frames per second for following mouths (syllables are 3-6 Hz)
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

    def find_all(self, gray: np.ndarray, detect_side: int = 0) -> list[np.ndarray]:
        """Every face as (x, y, w, h) in ``gray``'s pixels; with ``detect_side``, searched on a smaller copy."""
        scale = detect_side / max(gray.shape) if detect_side and max(gray.shape) > detect_side else 1.0
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        side = max(8, int(round(self.min_face * scale)))
        faces = self.cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=4, minSize=(side, side))
        return [(np.asarray(f) / scale).round().astype(int) for f in faces]

    def find(self, gray: np.ndarray, detect_side: int = 0):
        """The largest face, or None."""
        faces = self.find_all(gray, detect_side)
        return max(faces, key=lambda f: f[2] * f[3]) if faces else None


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
        self.speaker = Speaker(config.speaker)
        self.finder = FaceFinder(config.min_face)

    def extract(self, media, start=None, end=None) -> Result:
        cfg = self.config
        frames, times = load_frames(media, cfg.fps, start, end, max_side=cfg.max_side)
        grays = [cv2.cvtColor(_region(frame, self.region), cv2.COLOR_RGB2GRAY) for frame in frames]
        info = {}
        if self.speaker is Speaker.ACTIVE:
            boxes, info = self._active_boxes(media, start, end, times)
        else:
            boxes = [self.finder.find(gray, cfg.detect_side) for gray in grays]
        crops, found = [], 0
        for gray, box in zip(grays, boxes):
            if box is not None:
                x, y, w, h = box
                found += 1
                crops.append(cv2.resize(gray[y:y + h, x:x + w], (cfg.face_size, cfg.face_size)))
            elif self.no_face is NoFace.FULL_FRAME:
                crops.append(cv2.resize(gray, (cfg.face_size, cfg.face_size)))
        info.update(frames=int(len(frames)), face_frames=int(found))
        if not crops:
            return Result(None, info, "no_face", f"{media}: no face in any of {len(frames)} frames")
        vector = BACKBONES[self.backbone](crops, cfg)
        return Result(vector, info)

    def _active_boxes(self, media, start, end, times):
        """The speaking face's box at each of ``times``: faces are followed across frames at
        ``active_fps``, and the track whose mouth opening (the darkness of its mouth region) best
        follows the audio's loudness wins. Without audio, or with one face, the largest face."""
        from extractors.media import MediaError, load_audio

        cfg = self.config
        frames, dense_times = load_frames(media, cfg.active_fps, start, end, max_side=cfg.max_side)
        grays = [cv2.cvtColor(_region(frame, self.region), cv2.COLOR_RGB2GRAY) for frame in frames]
        tracks = follow_faces([self.finder.find_all(g, cfg.detect_side) for g in grays])
        chosen, score = None, float("nan")
        if len(tracks) > 1:
            try:
                signal = load_audio(media, start, end)
                loudness = envelope(signal, dense_times - (start or 0.0), 1.0 / cfg.active_fps)
                scores = [mouth_correlation(track, grays, loudness) for track in tracks]
                if np.isfinite(scores).any():
                    chosen = int(np.nanargmax(scores))
                    score = float(scores[chosen])
            except MediaError:
                pass   # no usable audio: the largest face
        if chosen is None:   # the track with the largest faces
            chosen = max(range(len(tracks)), key=lambda k: np.mean([b[2] * b[3] for b in tracks[k].values()])) \
                if tracks else None
        info = {"speaker": "active" if np.isfinite(score) else "largest", "faces_followed": len(tracks),
                "active_score": round(score, 3) if np.isfinite(score) else None}
        if chosen is not None:   # where the chosen face is, as a share of the frame's width
            centres = [b[0] + b[2] / 2 for b in tracks[chosen].values()]
            info["speaker_x"] = round(float(np.mean(centres)) / grays[0].shape[1], 3)
        boxes = []
        for t in times:   # the chosen track's box at the dense frame nearest each sampled time
            i = int(np.argmin(np.abs(dense_times - t)))
            boxes.append(tracks[chosen].get(i) if chosen is not None else None)
        return boxes, info


def follow_faces(per_frame: list[list[np.ndarray]]) -> list[dict]:
    """Greedy tracks: each face joins the track whose last box's centre is within half a face
    width of its own, else starts a track. A track maps frame index -> box."""
    tracks = []
    for i, faces in enumerate(per_frame):
        taken = set()
        for box in sorted(faces, key=lambda f: -f[2] * f[3]):
            centre = box[:2] + box[2:] / 2
            best, distance = None, float("inf")
            for k, track in enumerate(tracks):
                last = track[max(track)]
                d = float(np.hypot(*(last[:2] + last[2:] / 2 - centre)))
                if k not in taken and d < 0.5 * last[2] and d < distance:
                    best, distance = k, d
            if best is None:
                tracks.append({i: box})
                best = len(tracks) - 1
            tracks[best][i] = box
            taken.add(best)
    return [t for t in tracks if len(t) >= 3]


def envelope(signal: np.ndarray, times: np.ndarray, window: float, rate: int = 16000) -> np.ndarray:
    """RMS loudness of ``signal`` in a window around each time (seconds from the signal's start)."""
    half = int(window * rate / 2)
    centre = (np.asarray(times) * rate).astype(int)
    return np.array([np.sqrt(np.mean(signal[max(0, c - half):c + half] ** 2)) if c - half < len(signal) else 0.0
                     for c in centre])


def mouth_correlation(track: dict, grays: list[np.ndarray], loudness: np.ndarray) -> float:
    """Pearson correlation between how open the track's mouth is (the darkness of the middle of the
    face's lower third) and the loudness, over the frames where the face was found."""
    openness, loud = [], []
    for i, (x, y, w, h) in sorted(track.items()):
        mouth = grays[i][y + 2 * h // 3:y + h, x + w // 4:x + 3 * w // 4]
        if mouth.size:
            openness.append(-float(mouth.mean()))
            loud.append(loudness[i])
    if len(openness) < 4 or np.std(openness) == 0 or np.std(loud) == 0:
        return float("nan")
    return float(np.corrcoef(openness, loud)[0, 1])


BACKBONES = {
    "handcrafted": lambda crops, cfg: handcrafted(crops),
    "cnn3d": lambda crops, cfg: face_clip(crops, cfg.clip_frames, cfg.clip_size),
}
TRAINED_BACKBONES = {"cnn3d"}   # their cached vectors are inputs to a network trained in the stage (cnn3d.py)
