"""Faces in RGB frames: a detector chosen by name, and facial landmarks turned into expression
geometry (OpenFace-style measures, without its binaries).

Detectors (``Detector``), each ``find_all(rgb) -> [(x, y, w, h), ...]`` in the frame's pixels:
- ``mediapipe``: BlazeFace, MediaPipe's full-range face detector. Its weights ship inside the
  ``mediapipe`` wheel, so nothing is downloaded. On the real clips in ``../shared/data`` it
  finds a face in every sampled frame where the cascade misses one in six (see the README).
- ``cascade``: OpenCV's frontal-face Haar cascade (bundled with opencv-python-headless 4.x).

``LandmarkReader`` runs MediaPipe's face mesh (468 points, weights in the same wheel) on a
face's box; ``geometry`` turns one face's points into what the face is doing.
MediaPipe's graphs are built on first use in each process (see ``PerProcess``).
"""
from __future__ import annotations

import os
from enum import Enum

import cv2
import numpy as np


class Detector(str, Enum):
    MEDIAPIPE = "mediapipe"
    CASCADE = "cascade"


class CascadeFinder:
    """Frontal faces from the Haar cascade bundled with OpenCV 4.x."""

    def __init__(self, min_face: int, detect_side: int = 0):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {path} (opencv-python-headless 4.x ships it)")
        self.min_face, self.detect_side = min_face, detect_side

    def find_all(self, rgb: np.ndarray) -> list[np.ndarray]:
        """With ``detect_side``, faces are searched on a copy downscaled to that side."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        side = self.detect_side
        scale = side / max(gray.shape) if side and max(gray.shape) > side else 1.0
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        least = max(8, int(round(self.min_face * scale)))
        faces = self.cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=4, minSize=(least, least))
        return [(np.asarray(f) / scale).round().astype(int) for f in faces]


class PerProcess:
    """A MediaPipe graph built on first use in the calling process. MediaPipe is not fork-safe
    (a process forked after it ran crashes in malloc, even with its graphs closed), so the
    stages' worker pools start by forkserver (``pipeline.cache``) and graphs never cross one."""

    def __init__(self):
        self._graph, self._pid = None, None

    def graph(self):
        if self._graph is None or self._pid != os.getpid():
            self._graph, self._pid = self.build(), os.getpid()
        return self._graph

    def __getstate__(self):   # pickled to Dask workers: the graph is rebuilt there
        return {**self.__dict__, "_graph": None, "_pid": None}


def _mediapipe_solutions():
    import warnings

    os.environ.setdefault("GLOG_minloglevel", "2")   # TFLite's start-up chatter on stderr
    # protobuf's deprecation notice, raised by mediapipe's own code on every first process()
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype", category=UserWarning)
    try:
        from mediapipe.python import solutions
    except ImportError as exc:
        raise RuntimeError("the mediapipe face models need `pip install --no-deps mediapipe==0.10.14` "
                           "(the README's install command does it)") from exc
    return solutions


class MediapipeFinder(PerProcess):
    """BlazeFace full-range: faces up to about 5 m from the camera, as in MELD's wide shots."""

    def __init__(self, min_face: int, confidence: float = 0.5):
        super().__init__()
        self.min_face, self.confidence = min_face, confidence

    def build(self):
        return _mediapipe_solutions().face_detection.FaceDetection(model_selection=1,
                                                                   min_detection_confidence=self.confidence)

    def find_all(self, rgb: np.ndarray) -> list[np.ndarray]:
        height, width = rgb.shape[:2]
        found = self.graph().process(np.ascontiguousarray(rgb)).detections or []
        boxes = []
        for detection in found:
            rel = detection.location_data.relative_bounding_box
            x0, y0 = max(0, int(rel.xmin * width)), max(0, int(rel.ymin * height))
            x1, y1 = min(width, int((rel.xmin + rel.width) * width)), min(height, int((rel.ymin + rel.height) * height))
            if min(x1 - x0, y1 - y0) >= self.min_face:
                boxes.append(np.array([x0, y0, x1 - x0, y1 - y0]))
        return boxes


def face_finder(detector: str, min_face: int, detect_side: int = 0):
    if Detector(detector) is Detector.MEDIAPIPE:
        return MediapipeFinder(min_face)   # BlazeFace scales every frame to 192 px itself
    return CascadeFinder(min_face, detect_side)


def largest(faces: list[np.ndarray]):
    return max(faces, key=lambda f: f[2] * f[3]) if faces else None


# Face-mesh point indices (MediaPipe's canonical face model).
LIPS_INNER = (13, 14)
MOUTH_CORNERS = (61, 291)
EYES = ((159, 145, 33, 133), (386, 374, 362, 263))   # upper lid, lower lid, corner, corner
BROWS = ((105, 159), (334, 386))                      # brow middle, upper lid below it
OUTER_EYE_CORNERS = (33, 263)
CHEEKS = (234, 454)
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
GEOMETRY = ("mouth_open", "mouth_width", "eye_open_left", "eye_open_right", "brow_left", "brow_right",
            "smile", "yaw", "pitch", "roll")


def geometry(points: np.ndarray) -> np.ndarray:
    """One face's expression measures from its mesh points (468, 2 or 3), normalised by face size
    (the distance between the outer eye corners), so they compare across faces and distances."""
    p = points[:, :2]
    dist = lambda a, b: float(np.linalg.norm(p[a] - p[b]))  # noqa: E731
    eyes = dist(*OUTER_EYE_CORNERS) or 1e-6
    eye_open = [dist(up, down) / (dist(c1, c2) or 1e-6) for up, down, c1, c2 in EYES]
    brows = [dist(brow, lid) / eyes for brow, lid in BROWS]
    lip_centre = (p[LIPS_INNER[0]] + p[LIPS_INNER[1]]) / 2
    smile = float(lip_centre[1] - (p[MOUTH_CORNERS[0], 1] + p[MOUTH_CORNERS[1], 1]) / 2) / eyes  # corners up: > 0
    cheek_mid = (p[CHEEKS[0]] + p[CHEEKS[1]]) / 2
    yaw = float(p[NOSE_TIP, 0] - cheek_mid[0]) / (dist(*CHEEKS) or 1e-6)
    eye_mid = (p[OUTER_EYE_CORNERS[0]] + p[OUTER_EYE_CORNERS[1]]) / 2
    pitch = float(p[NOSE_TIP, 1] - eye_mid[1]) / (dist(FOREHEAD, CHIN) or 1e-6)
    dx, dy = p[OUTER_EYE_CORNERS[1]] - p[OUTER_EYE_CORNERS[0]]
    return np.array([dist(*LIPS_INNER) / eyes, dist(*MOUTH_CORNERS) / eyes, *eye_open, *brows, smile, yaw, pitch,
                     float(np.arctan2(dy, dx))], np.float32)


class LandmarkReader(PerProcess):
    """The face mesh of the face in a box: the box is widened, cropped square and read at 192 px."""

    SIDE, MARGIN = 192, 0.25

    def build(self):
        return _mediapipe_solutions().face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                         min_detection_confidence=0.3)

    def points(self, rgb: np.ndarray, box) -> np.ndarray | None:
        """(468, 3) points in the crop's unit square, or None where the mesh finds no face."""
        x, y, w, h = box
        side = int(max(w, h) * (1 + 2 * self.MARGIN))
        cx, cy = x + w // 2, y + h // 2
        padded = cv2.copyMakeBorder(rgb, side, side, side, side, cv2.BORDER_CONSTANT)
        crop = padded[cy + side - side // 2:cy + side + side // 2, cx + side - side // 2:cx + side + side // 2]
        if crop.size == 0:
            return None
        found = self.graph().process(np.ascontiguousarray(cv2.resize(crop, (self.SIDE, self.SIDE))))
        if not found.multi_face_landmarks:
            return None
        return np.array([(q.x, q.y, q.z) for q in found.multi_face_landmarks[0].landmark], np.float32)


def mouth_opening(reader: LandmarkReader | None, rgb: np.ndarray, box) -> float:
    """How open the mouth in ``box`` is: the mesh's lip gap over the face's size, or without a
    mesh reader (the cascade), the darkness of the middle of the face's lower third. NaN where
    there is no reading (a face in profile has no mesh)."""
    if reader is not None:
        points = reader.points(rgb, box)
        return float(geometry(points)[0]) if points is not None else float("nan")
    x, y, w, h = box
    mouth = rgb[y + 2 * h // 3:y + h, x + w // 4:x + 3 * w // 4]
    return -float(mouth.mean()) if mouth.size else float("nan")


def pooled_geometry(per_frame: list[np.ndarray], frames: int) -> np.ndarray:
    """Mean, std, min, max and mean absolute change (the dynamics) of each measure over the
    utterance, and the share of its frames with a face mesh."""
    g = np.stack(per_frame)
    change = np.abs(np.diff(g, axis=0)).mean(0) if len(g) > 1 else np.zeros(g.shape[1], np.float32)
    return np.concatenate([g.mean(0), g.std(0), g.min(0), g.max(0), change, [len(g) / max(frames, 1)]]).astype(np.float32)
